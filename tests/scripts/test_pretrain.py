"""Pretraining end to end: the tiny recipe of each family through `accelerate launch`, 2 processes versus 1,
resuming after an interruption, and the errors bad input gets before training starts."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
from helpers import REPO_ROOT, accelerate_launch, needs_mirror, script_main, tiny_corpus
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from lmrecipes.data import DataArguments
from lmrecipes.modeling import ModelArguments
from lmrecipes.recipe import RecipeError, load_recipe, parse_recipe
from lmrecipes.training import (
    COMPLETE_MARKER,
    NonFiniteLossError,
    RecipeTrainingArguments,
    last_complete_checkpoint,
)

pretrain = script_main("pretrain")

pytestmark = needs_mirror()

ARGUMENT_TYPES = (ModelArguments, DataArguments, RecipeTrainingArguments)


def eval_losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["eval_loss"] for entry in history if "eval_loss" in entry]


def train_losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory) -> Path:
    """One single-process run of the mini_gpt tiny recipe, shared by the tests that compare against it."""
    output_dir = tmp_path_factory.mktemp("mini_gpt-tiny")
    accelerate_launch("pretrain.py", "recipes/mini_gpt/tiny.yaml", "--output_dir", str(output_dir))
    return output_dir


@pytest.mark.parametrize("family", ["lstm_lm", "mini_bert", "mini_gpt"])
def test_tiny_recipe_end_to_end(family, gpt_run, tmp_path):
    if family == "mini_gpt":
        output_dir = gpt_run
    else:
        output_dir = tmp_path / family
        accelerate_launch("pretrain.py", f"recipes/{family}/tiny.yaml", "--output_dir", str(output_dir))

    losses = eval_losses(output_dir)  # the recipe evaluates at the start, midway and at the end
    assert len(losses) >= 3 and losses[-1] < losses[0], losses
    results = json.loads((output_dir / "all_results.json").read_text())
    assert results["eval_perplexity"] == pytest.approx(
        torch.tensor(results["eval_loss"]).exp().item(), rel=1e-4
    )

    # The output folder is a complete model: it loads with from_pretrained, next to its tokenizer and card.
    auto_class = AutoModelForMaskedLM if family == "mini_bert" else AutoModelForCausalLM
    model = auto_class.from_pretrained(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert model.config.model_type == family and model.config.vocab_size == len(tokenizer)
    card = ModelCard.load(output_dir / "README.md")
    assert family in card.text
    card_metrics = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert card_metrics["perplexity"] == pytest.approx(results["eval_perplexity"], rel=1e-9)


def test_two_processes_match_one_with_the_same_global_batch(gpt_run, tmp_path):
    """2 gloo processes x 4 examples follow the loss curve of 1 process x 8 examples.

    Tolerance: 0.02 nats per logged loss; the runs differ only in the order of floating-point reductions.
    """
    output_dir = tmp_path / "two_processes"
    accelerate_launch(
        "pretrain.py",
        "recipes/mini_gpt/tiny.yaml",
        "--output_dir",
        str(output_dir),
        "--per_device_train_batch_size",
        "4",
        "--tokenizer_name_or_path",
        str(gpt_run),
        config="multi_cpu.yaml",
    )
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 4
    single, double = train_losses(gpt_run), train_losses(output_dir)
    assert len(single) == len(double) >= 8
    assert max(abs(a - b) for a, b in zip(single, double, strict=True)) < 0.02, (single, double)


@pytest.mark.parametrize(
    "data,pass_at_step_20",
    [
        ((), 0),
        (("--streaming", "true", "--max_train_samples", "1000"), 0),  # 125 batches: 40 steps take a third
        (
            ("--streaming", "true", "--max_train_samples", "44"),
            3,
        ),  # 6 batches, the last of 4 blocks: 6.7 passes
    ],
    ids=["map_style", "streaming", "streaming_multi_pass"],
)
def test_resuming_after_an_interruption_reaches_the_same_weights(data, pass_at_step_20, gpt_run, tmp_path):
    """A run that died after its step-20 checkpoint, resumed with the same command, ends where an uninterrupted run
    ends: same weights, bit for bit. Streaming runs resume at the same position in the stream, in the same pass
    over it when max_steps loops over the stream several times."""
    output_dir = tmp_path / "run"
    command = ["--output_dir", str(output_dir), "--tokenizer_name_or_path", str(gpt_run), *data]
    accelerate_launch("pretrain.py", "recipes/mini_gpt/tiny.yaml", *command)
    uninterrupted = load_file(output_dir / "model.safetensors")
    # The Trainer's epoch counts the passes over the data (for a stream: pass + batches into it / max_steps).
    state = json.loads((output_dir / "checkpoint-20" / "trainer_state.json").read_text())
    assert int(state["epoch"]) == pass_at_step_20, state["epoch"]

    # Leave the folder as a crash between step 20 and step 40 would: only the step-20 checkpoint is complete, and a
    # later one was being written (no completion marker).
    for path in output_dir.iterdir():
        if path.name != "checkpoint-20" and not path.name.startswith("tokenizer"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.copytree(output_dir / "checkpoint-20", output_dir / "checkpoint-30")
    (output_dir / "checkpoint-30" / COMPLETE_MARKER).unlink()
    (output_dir / "checkpoint-30" / "model.safetensors").write_bytes(b"half-written")
    assert last_complete_checkpoint(output_dir) == str(output_dir / "checkpoint-20")

    result = accelerate_launch("pretrain.py", "recipes/mini_gpt/tiny.yaml", *command)
    assert "resuming from" in result.stderr and "checkpoint-20" in result.stderr
    resumed = load_file(output_dir / "model.safetensors")
    assert uninterrupted.keys() == resumed.keys()
    differences = {name: (resumed[name] - uninterrupted[name]).abs().max().item() for name in uninterrupted}
    worst = max(differences, key=differences.get)
    assert differences[worst] == 0, f"{worst} differs by up to {differences[worst]}"


# ----------------------------------------------------------------------------------------------------------------------
# Bad input: a clear error before training starts
# ----------------------------------------------------------------------------------------------------------------------


def run_in_process(tmp_path: Path, *overrides: str) -> dict:
    model_args, data_args, training_args, recipe = parse_recipe(
        ARGUMENT_TYPES,
        [str(REPO_ROOT / "recipes/mini_gpt/tiny.yaml"), "--output_dir", str(tmp_path), *overrides],
    )
    return pretrain(model_args, data_args, training_args, recipe)


def test_unknown_recipe_field_is_an_error(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_type: mini_gpt\nhiden_size: 64\n")
    with pytest.raises(
        RecipeError, match=r"recipe.yaml: unknown field 'hiden_size' \(did you mean 'hidden_size'"
    ):
        parse_recipe(ARGUMENT_TYPES, [str(recipe)])
    with pytest.raises(RecipeError, match="--learnig_rate"):
        parse_recipe(ARGUMENT_TYPES, [str(REPO_ROOT / "recipes/mini_gpt/tiny.yaml"), "--learnig_rate", "1"])


def test_command_line_overrides_the_recipe(tmp_path):
    model_args, _, training_args, recipe = parse_recipe(
        ARGUMENT_TYPES,
        [str(REPO_ROOT / "recipes/mini_gpt/tiny.yaml"), "--hidden_size", "48", "--max_steps", "7"],
    )
    assert model_args.hidden_size == 48 and training_args.max_steps == 7
    assert recipe["hidden_size"] == 48 and recipe["num_hidden_layers"] == 2


@pytest.mark.parametrize(
    "overrides,message",
    [
        (("--dataset_name", "nobody/no_such_dataset"), "nobody/no_such_dataset"),
        (("--dataset_config_name", "wikitext-99"), "wikitext-99"),
        (("--text_column", "body"), "body"),
        (("--block_size", "128"), "block_size"),
    ],
    ids=["missing_dataset", "missing_config", "missing_column", "block_size_above_max_positions"],
)
def test_bad_input_fails_before_training(tmp_path, overrides, message, gpt_run):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run_in_process(tmp_path, "--tokenizer_name_or_path", str(gpt_run), *overrides)
    assert not list(tmp_path.glob("checkpoint-*")), "training started despite the bad input"


def test_tokenizer_larger_than_the_model_vocabulary_is_an_error(gpt_run, tmp_path):
    with pytest.raises(ValueError, match="vocab"):
        run_in_process(
            tmp_path,
            "--model_name_or_path",
            str(gpt_run),
            "--tokenizer_name_or_path",
            str(big_tokenizer(tmp_path)),
        )
    assert not list(tmp_path.glob("checkpoint-*"))


@pytest.mark.parametrize("field", ["tokenizer_name_or_path", "model_name_or_path"])
def test_an_empty_tokenizer_or_model_folder_is_named(tmp_path, field):
    """transformers said "Couldn't instantiate the backend tokenizer", naming no folder."""
    empty = tmp_path / "empty"
    empty.mkdir()
    message = f"{field}={str(empty)!r}: the folder holds no tokenizer (it is empty)"
    with pytest.raises(RecipeError, match=f"^{re.escape(message)}$"):
        run_in_process(tmp_path / "run", f"--{field}", str(empty))
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def big_tokenizer(tmp_path: Path) -> Path:

    from lmrecipes.tokenization import train_tokenizer

    folder = tmp_path / "big_tokenizer"
    train_tokenizer(tiny_corpus() * 3, kind="byte_bpe", vocab_size=400).save_pretrained(folder)
    return folder


def test_empty_corpus_is_an_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_type: lstm_lm\ntrain_file: {empty}\nvalidation_file: {empty}\nreport_to: none\n"
    )
    model_args, data_args, training_args, recipe = parse_recipe(
        ARGUMENT_TYPES, [str(recipe), "--output_dir", str(tmp_path / "out")]
    )
    with pytest.raises(ValueError, match="empty"):
        pretrain(model_args, data_args, training_args, recipe)


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(gpt_run, tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step"):
        run_in_process(
            tmp_path,
            "--tokenizer_name_or_path",
            str(gpt_run),
            "--learning_rate",
            "1e30",
            "--warmup_steps",
            "0",
            "--lr_scheduler_type",
            "constant",
            "--max_grad_norm",
            "0",
            "--logging_steps",
            "1",
            "--save_steps",
            "1",
            "--eval_strategy",
            "no",
            "--eval_on_start",
            "false",
        )
    checkpoints = sorted(tmp_path.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert checkpoints, "no checkpoint was kept"
    last = checkpoints[-1]
    assert last_complete_checkpoint(tmp_path) == str(last)
    weights = load_file(last / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values()), (
        "a checkpoint with non-finite weights was saved"
    )
    assert not (tmp_path / "model.safetensors").exists(), "the final model was saved despite the divergence"


def test_lstm_recipe_with_truncated_bptt_trains_and_refuses_a_stream(gpt_run, tmp_path):
    recipe = [str(REPO_ROOT / "recipes/lstm_lm/tiny.yaml"), "--tokenizer_name_or_path", str(gpt_run)]
    recipe += ["--truncated_bptt", "true", "--output_dir"]
    with pytest.raises(ValueError, match="streaming"):
        pretrain(*parse_recipe(ARGUMENT_TYPES, [*recipe, str(tmp_path / "stream"), "--streaming", "true"]))
    pretrain(*parse_recipe(ARGUMENT_TYPES, [*recipe, str(tmp_path / "tbptt")]))
    losses = eval_losses(tmp_path / "tbptt")
    assert losses[-1] < losses[0], losses


PRETRAINING_RECIPES = sorted(
    path.relative_to(REPO_ROOT).as_posix()
    for path in REPO_ROOT.glob("recipes/*/*.yaml")
    if "model_type" in load_recipe(path)
)


@pytest.mark.parametrize("recipe", PRETRAINING_RECIPES)
def test_every_pretraining_recipe_parses(recipe):
    model_args, data_args, training_args, merged = parse_recipe(ARGUMENT_TYPES, [str(REPO_ROOT / recipe)])
    assert model_args.model_type == merged["model_type"]
    assert data_args.dataset_name or data_args.train_file
    assert training_args.output_dir == merged["output_dir"]


# ----------------------------------------------------------------------------------------------------------------------
# The output folder: another recipe's work is never reused, a finished run is not redone
# ----------------------------------------------------------------------------------------------------------------------


def test_a_folder_holding_another_recipes_work_is_refused_and_a_finished_run_is_a_no_op(
    gpt_run, tmp_path, caplog
):
    tokenizer = ("--tokenizer_name_or_path", str(gpt_run))
    metrics = run_in_process(
        tmp_path, *tokenizer, "--max_steps", "4", "--save_steps", "2", "--eval_steps", "2"
    )
    recorded = (tmp_path / "recipe.yaml").read_bytes()
    state = (tmp_path / "trainer_state.json").read_bytes()

    # The same command again: nothing is trained or rewritten, the finished run's results come back.
    with caplog.at_level(logging.WARNING, logger="lmrecipes.training"):
        again = run_in_process(
            tmp_path, *tokenizer, "--max_steps", "4", "--save_steps", "2", "--eval_steps", "2"
        )
    assert again == json.loads((tmp_path / "all_results.json").read_text())
    assert again["train_loss"] == metrics["train_loss"]
    assert (tmp_path / "trainer_state.json").read_bytes() == state
    assert any("nothing to do" in record.getMessage() for record in caplog.records)

    # Another recipe in that folder stops before touching it, naming what differs.
    with pytest.raises(
        ValueError, match=r"holds the work of another recipe \(.*hidden_size: 32 there, 48 now"
    ):
        run_in_process(tmp_path, *tokenizer, "--max_steps", "4", "--hidden_size", "48")
    assert (tmp_path / "recipe.yaml").read_bytes() == recorded
    assert (tmp_path / "trainer_state.json").read_bytes() == state

    # A stale tokenizer from a run that failed right after training it is not reused by a recipe with another size.
    stale = tmp_path / "stale"
    with pytest.raises(ValueError):
        run_in_process(
            stale, "--max_steps", "4", "--per_device_eval_batch_size", "0"
        )  # fails after the tokenizer
    assert (stale / "tokenizer.json").is_file()
    with pytest.raises(ValueError, match="tokenizer_vocab_size: 300 there, 1000 now"):
        run_in_process(stale, "--max_steps", "4", "--tokenizer_vocab_size", "1000")

    with pytest.raises(ValueError, match="is a file, not a folder"):
        run_in_process(tmp_path / "all_results.json", *tokenizer)

    # --overwrite_output_dir: the way out, explicitly: the other recipe starts over in that folder.
    overwritten = run_in_process(
        tmp_path, *tokenizer, "--max_steps", "4", "--hidden_size", "48", "--overwrite_output_dir", "true"
    )
    assert "hidden_size: 48" in (tmp_path / "recipe.yaml").read_text()
    # the old checkpoints are gone
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == ["checkpoint-4"]
    assert overwritten["train_loss"] != metrics["train_loss"]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (("--hidden_size", "0"), "hidden_size"),
        (("--num_attention_heads", "3"), "num_attention_heads"),
        (("--block_size", "128"), "block_size=128 exceeds"),
        (("--per_device_train_batch_size", "0"), "per_device_train_batch_size must be >= 1"),
    ],
    ids=["zero_width", "heads_do_not_divide", "block_over_positions", "zero_batch"],
)
def test_checks_that_need_no_data_run_before_anything_is_written(tmp_path, overrides, message):
    output_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        run_in_process(output_dir, *overrides)  # no tokenizer given: one would be trained first
    assert not output_dir.exists(), sorted(path.name for path in output_dir.iterdir())


def test_a_single_local_text_file_trains_and_evaluates(gpt_run, tmp_path):
    """A Hub recipe moved to one local file from the command line: validation rows are cut from the file."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(tiny_corpus(400)) + "\n")
    metrics = run_in_process(
        tmp_path / "out",
        *("--dataset_name", "None", "--dataset_config_name", "None", "--train_file", str(corpus)),
        *(
            "--tokenizer_name_or_path",
            str(gpt_run),
            "--max_steps",
            "2",
            "--eval_steps",
            "2",
            "--save_steps",
            "2",
        ),
    )
    assert metrics["eval_loss"] > 0 and metrics["train_runtime"] > 0
    with pytest.raises(ValueError, match="validation_file: a streamed train_file"):
        run_in_process(
            tmp_path / "stream",
            *("--dataset_name", "None", "--dataset_config_name", "None", "--train_file", str(corpus)),
            *("--streaming", "true", "--max_steps", "2"),
        )
    assert not (tmp_path / "stream").exists()


def test_the_readme_tracker_example_logs_offline_to_tensorboard_and_trackio(tmp_path, monkeypatch):
    """`--report_to tensorboard trackio` (README): losses, tokens per second and the evaluation samples reach both
    trackers, with no network."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    run_in_process(tmp_path / "run", "--report_to", "tensorboard", "trackio", "--max_steps", "10")

    (events,) = (tmp_path / "run" / "runs").iterdir()
    board = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    scalars = set(board.Tags()["scalars"])
    assert {"train/loss", "train/tokens_per_second", "train/mfu", "eval/loss"} <= scalars, scalars
    assert any("eval/sample_0" in tag for tag in board.Tags()["tensors"]), board.Tags()
    assert any(path.suffix == ".db" for path in (tmp_path / "trackio").iterdir())  # trackio's local store
