"""Shared test set-up: offline Hub, the dataset mirror, and tiny tokenizers trained on the fly."""

from __future__ import annotations

import os

# Nothing in the test suite may reach the Hugging Face Hub: these machines have no route to it, and tests must not
# depend on the network anyway. The data mirror stands in for the Hub datasets the recipes name. Set before
# huggingface_hub is imported, which reads HF_HUB_OFFLINE once, at import (set later, a Hub lookup of a missing
# dataset waits 23 s on retries before it fails).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import DATA_MIRROR, HUB_TOKEN, HUB_USER, tiny_corpus  # noqa: E402
from hub_server import FakeHub  # noqa: E402
from huggingface_hub import constants  # noqa: E402

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


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A fake Hub that knows HUB_TOKEN as HUB_USER's, with the client pointed at it and HF_TOKEN set."""
    import transformers.utils.hub

    with FakeHub({HUB_TOKEN: HUB_USER}, root=tmp_path / "fake-hub") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline (above)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        # No login on this machine: only HF_TOKEN counts.
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-login" / "stored_tokens"))
        for name in ("HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
        # The Trainer keeps one HfApi for the process; make it build a fresh one for this endpoint.
        monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
        yield hub
