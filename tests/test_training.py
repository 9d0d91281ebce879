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
from lmrecipes.models.mini_bert import MiniBertConfig, MiniBertForMaskedLM
from lmrecipes.models.mini_gpt import MiniGPTConfig, MiniGPTForCausalLM
from lmrecipes.optimization import MuonWithAdamW
from lmrecipes.throughput import training_flops_per_token
from lmrecipes.training import (
    COMPLETE_MARKER,
    RecipeTrainer,
    RecipeTrainingArguments,
    last_complete_checkpoint,
    start_run,
)

MAX_STEPS = 8


def tiny_trainer(output_dir: Path, callbacks=(), tokenizer=None, **args) -> RecipeTrainer:
    torch.manual_seed(0)
    vocab_size = len(tokenizer) if tokenizer is not None else 50
    config = MiniGPTConfig(
        vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, vocab_size, (64, 16), generator=generator).tolist()
    train_dataset = Dataset.from_dict({"input_ids": blocks, "labels": blocks})
    fields = dict(
        output_dir=str(output_dir), max_steps=MAX_STEPS, per_device_train_batch_size=4, learning_rate=1e-2,
        save_steps=2, logging_steps=3, report_to="none", disable_tqdm=True, use_cpu=True, seed=0,
        dataloader_pin_memory=False,
    )  # fmt: skip
    return RecipeTrainer(
        model=MiniGPTForCausalLM(config),
        args=RecipeTrainingArguments(**(fields | args)),
        train_dataset=train_dataset,
        eval_dataset=train_dataset.select(range(8)),
        processing_class=tokenizer,
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


def test_a_muon_run_resumes_to_the_same_weights(tmp_path):
    """Muon's momentum and AdamW's moments both travel through the checkpoint."""
    whole = tiny_trainer(tmp_path / "whole", muon_learning_rate=0.02)
    whole.train()
    optimizer = whole.optimizer.optimizer  # accelerate wraps the Trainer's optimizer
    assert isinstance(optimizer, MuonWithAdamW)
    # The schedule reached both optimizers (accelerate's prepare reloads their state, which renews their groups).
    scheduled = whole.lr_scheduler.get_last_lr()
    assert [group["lr"] for group in optimizer.adamw.param_groups + optimizer.muon.param_groups] == scheduled
    assert scheduled[-1] == 0.0  # the linear schedule ends at 0

    interrupted = tmp_path / "interrupted"
    tiny_trainer(interrupted, callbacks=[StopAt(4)], muon_learning_rate=0.02).train()
    resumed = tiny_trainer(interrupted, muon_learning_rate=0.02)
    resumed.train(resume_from_checkpoint=str(interrupted / "checkpoint-4"))
    for (name, mine), theirs in zip(resumed.model.named_parameters(), whole.model.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0, msg=name)


def test_training_logs_carry_tokens_per_second_and_mfu_against_the_given_peak(tmp_path):
    trainer = tiny_trainer(tmp_path, peak_tflops=1e-3)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == MAX_STEPS // 3
    flops_per_token = training_flops_per_token(trainer.model, seq_len=16)
    for entry in logs:
        assert entry["tokens_per_second"] > 0
        expected_mfu = entry["tokens_per_second"] * flops_per_token / 1e9
        assert entry["mfu"] == pytest.approx(expected_mfu, rel=1e-3, abs=1e-4)


def test_a_sparse_prediction_head_counts_in_the_logged_mfu_only_where_there_are_labels(tmp_path):
    config = MiniBertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, sparse_prediction=True,
    )  # fmt: skip
    blocks = torch.randint(0, 50, (16, 16), generator=torch.Generator().manual_seed(0))
    labels = torch.full_like(blocks, -100)
    labels[:, ::4] = blocks[:, ::4]  # a quarter of the positions labelled
    trainer = RecipeTrainer(
        model=MiniBertForMaskedLM(config),
        args=RecipeTrainingArguments(
            output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, logging_steps=3, peak_tflops=1e-3,
            report_to="none", disable_tqdm=True, use_cpu=True, save_strategy="no", dataloader_pin_memory=False,
        ),
        train_dataset=Dataset.from_dict({"input_ids": blocks.tolist(), "labels": labels.tolist()}),
        data_collator=default_data_collator,
    )  # fmt: skip
    trainer.train()
    (entry,) = [entry for entry in trainer.state.log_history if "loss" in entry]
    flops_per_token = training_flops_per_token(trainer.model, seq_len=16, labelled_fraction=0.25)
    assert flops_per_token < training_flops_per_token(trainer.model, seq_len=16)
    assert entry["mfu"] == pytest.approx(
        entry["tokens_per_second"] * flops_per_token / 1e9, rel=1e-3, abs=1e-4
    )


def test_evaluation_reads_the_dataset_in_order_when_training_groups_by_length(tmp_path):
    """Answers decoded from windows (SQuAD, review windows) are matched to their rows by position: evaluation must
    keep the dataset's order even when training batches are grouped by length (transformers groups both)."""
    lengths = [3, 9, 1, 7, 5, 8, 2, 6, 4, 10, 12, 11]
    rows = Dataset.from_dict({"input_ids": [[1] * length for length in lengths]})
    trainer = tiny_trainer(tmp_path, train_sampling_strategy="group_by_length", per_device_eval_batch_size=1)
    read = [batch["input_ids"].shape[-1] for batch in trainer.get_eval_dataloader(rows)]
    assert read == lengths


def test_a_causal_lm_is_sampled_at_each_evaluation_without_changing_its_training(
    tmp_path, byte_bpe_tokenizer
):
    settings = dict(
        eval_strategy="steps", eval_steps=4, sample_prompts=["the cat", ""], sample_max_new_tokens=5
    )
    sampled = tiny_trainer(tmp_path / "sampled", tokenizer=byte_bpe_tokenizer, **settings)
    sampled.train()
    samples = [entry for entry in sampled.state.log_history if "eval_sample_0" in entry]
    assert [entry["step"] for entry in samples] == [4, 8]
    assert all(entry["eval_sample_0"].startswith("the cat") and "eval_sample_1" in entry for entry in samples)

    silent = tiny_trainer(
        tmp_path / "silent", tokenizer=byte_bpe_tokenizer, **settings | {"sample_max_new_tokens": 0}
    )
    silent.train()
    assert not any("eval_sample_0" in entry for entry in silent.state.log_history)
    # The samples draw from their own random stream: dropout in training saw the same numbers either way.
    for mine, theirs in zip(sampled.model.parameters(), silent.model.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


def test_a_tracker_that_is_not_installed_or_unknown_stops_the_run_before_any_work(tmp_path, monkeypatch):
    from transformers.integrations import integration_utils

    monkeypatch.setattr(integration_utils, "is_tensorboard_available", lambda: False)
    output_dir = tmp_path / "run"
    args = RecipeTrainingArguments(output_dir=str(output_dir), use_cpu=True, report_to=["tensorboard"])
    with pytest.raises(
        RecipeError,
        match=r"^report_to: tensorboard is not installed here: pip install 'lmrecipes\[tensorboard\]'",
    ):
        start_run(args, recipe={"output_dir": str(output_dir)})
    args.report_to = ["tensorbored"]
    with pytest.raises(
        RecipeError, match="report_to: unknown tracker 'tensorbored'; transformers supports .*tensorboard"
    ):
        start_run(args, recipe={"output_dir": str(output_dir)})
    assert not output_dir.exists()
