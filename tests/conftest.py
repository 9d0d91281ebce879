"""Shared test set-up: offline Hub, the dataset mirror, and tiny tokenizers trained on the fly."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import DATA_MIRROR, tiny_corpus

# Nothing in the test suite may reach the Hugging Face Hub: these machines have no route to it, and tests must not
# depend on the network anyway. The data mirror stands in for the Hub datasets the recipes name.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# Tiny models on 2 cores: one thread per process is faster than two threads fighting over the cores, in the test
# process and in the scripts the tests launch.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
if DATA_MIRROR.is_dir():
    os.environ.setdefault("LMRECIPES_DATA_MIRROR", str(DATA_MIRROR))


@pytest.fixture(scope="session")
def byte_bpe_tokenizer():
    from lmrecipes.tokenization import train_tokenizer

    return train_tokenizer(tiny_corpus(), kind="byte_bpe", vocab_size=320, model_max_length=64)


@pytest.fixture(scope="session")
def wordpiece_tokenizer():
    from lmrecipes.tokenization import train_tokenizer

    return train_tokenizer(tiny_corpus(), kind="wordpiece", vocab_size=200, model_max_length=64)
