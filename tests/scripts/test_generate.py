"""scripts/generate.py, and the end-of-run sample of scripts/pretrain.py, on a tiny mini_gpt folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT, TINY_SIZES, script_main, tiny_corpus, truncate
from transformers import AutoConfig, AutoModelForCausalLM

from lmrecipes.tokenization import train_tokenizer

POSITIONS = 16


@pytest.fixture(scope="module")
def short_gpt(tmp_path_factory):
    """A random mini_gpt with only 16 positions and a 300-token byte-level BPE tokenizer."""
    folder = tmp_path_factory.mktemp("short_gpt")
    tokenizer = train_tokenizer(tiny_corpus(), "byte_bpe", vocab_size=300)
    config = AutoConfig.for_model(
        "mini_gpt",
        **TINY_SIZES,
        vocab_size=len(tokenizer),
        max_position_embeddings=POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def generate(*arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "scripts/generate.py", *arguments]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_new_tokens_stop_at_the_position_limit_instead_of_crashing(short_gpt):
    run = generate(str(short_gpt), "--prompt", "the cat", "--max_new_tokens", "200")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "lowered to" in run.stderr and f"max_position_embeddings={POSITIONS}" in run.stderr
    assert run.stdout.startswith("the cat")  # streamed: prompt, then the new tokens

    too_long = " ".join(["the cat sat"] * 20)
    run = generate(str(short_gpt), "--prompt", too_long)
    assert run.returncode != 0 and "nothing can be generated after it; shorten the prompt" in run.stderr


def test_prompt_file_and_greedy_decoding_pass_only_the_flags_that_apply(short_gpt, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat\n\na dog\n")
    run = generate(
        str(short_gpt), "--prompt_file", str(prompts), "--do_sample", "false", "--max_new_tokens", "4"
    )
    assert run.returncode == 0, run.stderr[-2000:]
    outputs = [block.strip() for block in run.stdout.split("-" * 40) if block.strip()]
    assert len(outputs) == 2 and outputs[0].startswith("the cat") and outputs[1].startswith("a dog")
    assert "top_k" not in run.stderr and "temperature" not in run.stderr  # no "flag ignored" warnings


def test_a_tokenizer_larger_than_the_vocabulary_is_refused_before_generating(short_gpt, tmp_path):
    small = tmp_path / "small_vocab"
    model = AutoModelForCausalLM.from_pretrained(short_gpt)
    model.resize_token_embeddings(100)
    model.save_pretrained(small)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (small / name).write_bytes((short_gpt / name).read_bytes())
    run = generate(str(small), "--prompt", "the cat")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert (
        f"error: The tokenizer of {str(small)!r} has 300 tokens but the model's vocab_size is 100 "
        f"(model of {str(small)!r})" in run.stderr
    )


@pytest.mark.parametrize("damage", ["truncated model.safetensors", "empty folder"])
def test_a_damaged_or_empty_folder_ends_in_one_line_naming_it(short_gpt, tmp_path, damage):
    folder = Path(shutil.copytree(short_gpt, tmp_path / "damaged"))
    if damage == "empty folder":
        shutil.rmtree(folder)
        folder.mkdir()
        expected = f"error: model_path={str(folder)!r}: the folder holds no tokenizer (it is empty)"
    else:
        truncate(folder / "model.safetensors")
        expected = f"error: model_path={str(folder)!r}: model.safetensors is damaged or truncated ("
    run = generate(str(folder), "--prompt", "the cat")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1].startswith(expected)


def test_the_end_of_run_sample_fits_a_short_position_table(short_gpt):
    script_main("pretrain")
    sample = sys.modules["scripts.pretrain"].sample
    text = sample(short_gpt, prompt="The", max_new_tokens=60)  # 60 > 16 positions: crashed with IndexError
    assert text.startswith("The")
