"""The Trainer additions and the start of a run: a crash during a save never loses the last complete checkpoint,
whatever save_total_limit; a resumed run reports the whole run's train_loss; one run at a time in a folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback, TrainingArguments, default_data_collator

from lmrecipes import training
from lmrecipes.errors import RecipeError
from lmrecipes.models.mini_gpt import MiniGPTConfig, MiniGPTForCausalLM
from lmrecipes.training import COMPLETE_MARKER, RecipeTrainer, last_complete_checkpoint, start_run

MAX_STEPS = 8


def tiny_trainer(output_dir: Path, callbacks=(), **args) -> RecipeTrainer:
    torch.manual_seed(0)
    config = MiniGPTConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, 50, (64, 16), generator=generator).tolist()
    train_dataset = Dataset.from_dict({"input_ids": blocks, "labels": blocks})
    fields = dict(
        output_dir=str(output_dir), max_steps=MAX_STEPS, per_device_train_batch_size=4, learning_rate=1e-2,
        save_steps=2, logging_steps=3, report_to="none", disable_tqdm=True, use_cpu=True, seed=0,
        dataloader_pin_memory=False,
    )  # fmt: skip
    return RecipeTrainer(
        model=MiniGPTForCausalLM(config),
        args=TrainingArguments(**(fields | args)),
        train_dataset=train_dataset,
        data_collator=default_data_collator,
        callbacks=list(callbacks),
    )


class Crash(Exception):
    pass


def test_a_crash_while_saving_with_save_total_limit_1_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """The Trainer deletes checkpoints over the limit as part of saving: the old one must outlive the new one's
    completion, or a crash in between leaves nothing to resume from."""
    mark_complete = training.mark_checkpoint_complete

    def crash_at_step_4(folder: Path) -> None:
        if folder.name == "checkpoint-4":
            raise Crash  # the instant before checkpoint-4 is marked complete
        mark_complete(folder)

    monkeypatch.setattr(training, "mark_checkpoint_complete", crash_at_step_4)
    with pytest.raises(Crash):
        tiny_trainer(tmp_path, save_total_limit=1).train()

    assert (tmp_path / "checkpoint-4" / "trainer_state.json").is_file()  # written, not complete
    assert (tmp_path / "checkpoint-2" / COMPLETE_MARKER).is_file()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")


def test_save_total_limit_still_removes_older_complete_checkpoints(tmp_path):
    tiny_trainer(tmp_path, save_total_limit=2).train()
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-8"]


class StopAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True  # an interruption right after this step's checkpoint


def test_a_resumed_run_reports_the_whole_runs_train_loss(tmp_path):
    uninterrupted = tiny_trainer(tmp_path / "whole").train().metrics["train_loss"]

    interrupted = tmp_path / "interrupted"
    tiny_trainer(interrupted, callbacks=[StopAt(4)]).train()
    resumed = tiny_trainer(interrupted).train(resume_from_checkpoint=str(interrupted / "checkpoint-4"))

    assert resumed.global_step == MAX_STEPS
    assert resumed.metrics["train_loss"] == pytest.approx(uninterrupted, rel=1e-5)
    assert resumed.training_loss == pytest.approx(uninterrupted, rel=1e-5)


def test_a_folder_in_use_by_another_run_is_refused_until_that_run_ends(tmp_path):
    """A second run in the same output folder stops at once; the lock goes with the process holding it, kill -9
    included."""
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from lmrecipes.training import hold_output_folder; "
         "from pathlib import Path; hold_output_folder(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)",
         str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RecipeError, match=f"output_dir {tmp_path} is in use by another run"):
            start_run(args, recipe={"output_dir": str(tmp_path)})
    finally:
        holder.kill()
        holder.wait()
    assert start_run(args, recipe={"output_dir": str(tmp_path)}) is None  # free again once the holder is gone


@pytest.mark.parametrize("batches_per_epoch", [40, 3, 1_000_003])
def test_stream_position_reads_the_pass_and_batches_back_from_the_trainers_epoch(batches_per_epoch):
    # The Trainer's state.epoch for a stream: pass + batches drawn from it / (max_steps x accumulation).
    for passes in (0, 1, 3, 999):
        for batches in {1, 2, batches_per_epoch // 2, batches_per_epoch - 1} - {0}:
            epoch = passes + batches / batches_per_epoch
            assert training.stream_position(epoch, batches_per_epoch) == (passes, batches)
