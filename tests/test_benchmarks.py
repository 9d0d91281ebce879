"""The speed benchmark still runs: a tiny pair per family, one timed step, through the real script."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO_ROOT, needs_mirror


def test_training_speed_benchmark_times_each_family_against_its_built_in_twin(tmp_path):
    output = tmp_path / "speed.json"
    tiny = (
        "--hidden_size 32 --num_layers 1 --num_heads 2 --intermediate_size 64 --seq_len 16 --max_positions 16"
    )
    command = [
        sys.executable,
        "benchmarks/bench_training_speed.py",
        *tiny.split(),
        *"--lstm_size 32 --lstm_layers 1 --batch_size 2 --vocab_size 100 --warmup_steps 1 --timed_steps 1".split(),
        *"--matmul_size 64 --matmul_repeats 1 --threads 1 --json_output".split(),
        str(output),
    ]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(output.read_text())["results"]
    by_family: dict[str, list[dict]] = {}
    for row in results:
        by_family.setdefault(row["family"], []).append(row)
    assert set(by_family) == {"lstm_lm", "mini_bert", "mini_gpt"}
    for family, (first, second) in by_family.items():
        assert {first["is_ours"], second["is_ours"]} == {True, False}, family
        # the pair does the same arithmetic: equal parameter counts, so tokens/s compare like with like
        assert first["parameters"] == second["parameters"] > 0
        assert first["tokens_per_second"] > 0 and second["tokens_per_second"] > 0


@needs_mirror("stanfordnlp/sst2")
def test_tfidf_baseline_benchmark_scores_and_writes_its_section(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other\n\nkept\n")
    command = [
        sys.executable,
        "benchmarks/bench_tfidf_baseline.py",
        *"--tasks sst2 --max_train_samples 2000 --max_eval_samples 200 --update_results true".split(),
        *("--results_file", str(results)),
    ]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    text = results.read_text()
    assert "## Other\n\nkept" in text and "## Classic baseline: tf-idf + logistic regression" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| sst2 ")]
    accuracy = float(row.split("|")[4])
    assert 0.6 < accuracy <= 1.0  # 2,000 sentences already separate the two classes well above chance


@needs_mirror("Salesforce/wikitext")
@pytest.mark.parametrize(
    ("recipe_file", "extra_fields", "models", "trainers"),
    [
        pytest.param(
            "recipes/mini_gpt/tiny.yaml", "", ["mini_gpt", "mini_gpt", "GPT2LMHeadModel"], ["RecipeTrainer"] * 2,
            id="mini_gpt",
        ),
        pytest.param(  # a truncated-BPTT recipe runs ours in TBPTTTrainer, as scripts/pretrain.py does
            "recipes/lstm_lm/tiny.yaml", "truncated_bptt: true", ["lstm_lm", "lstm_lm", "PlainLSTMLanguageModel"], ["TBPTTTrainer"] * 2,
            id="lstm_lm-truncated_bptt",
        ),
    ],
)  # fmt: skip
def test_trainer_speed_benchmark_runs_ours_fast_ours_plain_and_the_built_in(
    tmp_path, recipe_file, extra_fields, models, trainers
):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"{(REPO_ROOT / recipe_file).read_text()}\n{extra_fields}\n")
    output = tmp_path / "trainer_speed.json"
    command = [
        sys.executable,
        "benchmarks/bench_trainer_speed.py",
        *f"--recipes {recipe} --warmup_steps 1 --timed_steps 2 --rounds 1 --max_blocks 64".split(),
        *"--threads 1 --memory false --json_output".split(),  # the memory probe: the test below
        str(output),
        "--fast=--dataloader_drop_last true",  # a cheap stand-in for the speed-ups: no compilation here
    ]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(output.read_text())["results"]
    assert [row["variant"] for row in results] == ["ours, fast", "ours, plain", "built-in"]
    assert [row["model"] for row in results] == models
    assert [row["trainer"] for row in results] == [*trainers, "Trainer"]
    for row in results:
        assert row["tokens_per_second"] > 0 and 0 < row["mfu"] < 1 and row["peak_memory_bytes"] is None
    assert results[2]["speed_vs_built_in"] == 1.0  # the built-in against itself


def test_the_memory_probe_resets_the_peak_resident_set_before_training(monkeypatch):
    """Preparing the data peaks above a small model's training; the probe must not report that earlier peak."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    import bench_trainer_speed

    block = bytearray(300 * 2**20)  # 300 MiB, touched so that it is resident
    block[::4096] = b"x" * len(block[::4096])
    del block
    high = bench_trainer_speed._status_kib("VmHWM")
    bench_trainer_speed.reset_peak_memory()
    assert bench_trainer_speed._status_kib("VmHWM") < high - 200 * 1024


def test_generation_benchmark_times_cached_and_uncached_and_the_lstm_per_token():
    command = [
        sys.executable,
        "benchmarks/bench_generation.py",
        *"--new_tokens 16 --lstm_new_tokens 40 --early_tokens 4-8 --repeats 1".split(),
    ]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        "| mini_gpt |" in run.stdout and "| GPT2LMHeadModel |" in run.stdout and "| lstm_lm |" in run.stdout
    )
