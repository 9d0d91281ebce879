"""Truncated BPTT: the parallel-stream layout per process and micro-batch, and the state the trainer carries."""

from __future__ import annotations

import pytest
import torch
from accelerate.data_loader import prepare_data_loader
from datasets import Dataset
from helpers import tiny_corpus
from torch.utils.data import DataLoader
from transformers import TrainingArguments

from lmrecipes.data import build_lm_dataset, lm_data_collator
from lmrecipes.models.lstm_lm import LSTMLMConfig, LSTMLMForCausalLM
from lmrecipes.tbptt import (
    ParallelStreamsSampler,
    TBPTTTrainer,
    check_truncated_bptt_arguments,
    parallel_stream_order,
)

BLOCK_SIZE = 16

# ---------------------------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------------------------


def test_parallel_stream_order_is_batchify():
    # 14 blocks, 4 streams: stream s is blocks [3s, 3s + 3); blocks 12 and 13 are left over.
    assert parallel_stream_order(14, 4) == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    assert parallel_stream_order(3, 4) == []
    assert len(ParallelStreamsSampler(14, 4)) == 12


def batches_seen_by_each_process(
    num_blocks: int, per_device_batch: int, processes: int, accumulation: int, split_batches: bool
) -> list[list[list[int]]]:
    """The batches of block ids each process gets from accelerate, as the Trainer builds and shards them."""
    num_streams = per_device_batch * processes * accumulation
    # With split_batches the Trainer's DataLoader batch is the global one and accelerate cuts it per process.
    loader_batch = per_device_batch * processes if split_batches else per_device_batch
    seen = []
    for process in range(processes):
        loader = DataLoader(
            list(range(num_blocks)),
            batch_size=loader_batch,
            sampler=ParallelStreamsSampler(num_blocks, num_streams),
        )
        shard = prepare_data_loader(
            loader,
            num_processes=processes,
            process_index=process,
            split_batches=split_batches,
            put_on_device=False,
        )
        seen.append([batch.tolist() for batch in shard])
    return seen


@pytest.mark.parametrize("split_batches", [False, True])
@pytest.mark.parametrize(("processes", "accumulation"), [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_each_process_and_micro_batch_reads_its_own_contiguous_streams(
    processes, accumulation, split_batches
):
    per_device_batch, num_blocks = 3, 75
    num_streams = per_device_batch * processes * accumulation
    steps_per_stream = num_blocks // num_streams
    seen = batches_seen_by_each_process(num_blocks, per_device_batch, processes, accumulation, split_batches)

    read_by = {}  # (process, micro-batch slot, row) -> the blocks it read, in order
    for process, batches in enumerate(seen):
        # Every process gets the same number of full batches, a whole number of optimizer steps.
        assert len(batches) == steps_per_stream * accumulation
        for index, batch in enumerate(batches):
            assert len(batch) == per_device_batch
            for row, block in enumerate(batch):
                read_by.setdefault((process, index % accumulation, row), []).append(block)

    # Each (process, slot, row) reads one stream: consecutive blocks from the stream's start, one per step.
    starts = []
    for (process, slot, row), blocks in read_by.items():
        start = blocks[0]
        assert blocks == list(range(start, start + steps_per_stream)), (process, slot, row)
        assert start % steps_per_stream == 0
        # The stream number the trainer's per-slot state relies on (docs/tbptt.md).
        stream = slot * processes * per_device_batch + process * per_device_batch + row
        assert start == stream * steps_per_stream
        starts.append(start)
    # Together they read every stream once: nothing is read twice, only the < num_streams leftover is skipped.
    assert sorted(starts) == [stream * steps_per_stream for stream in range(num_streams)]


def test_two_processes_by_hand():
    # 8 blocks, 2 processes x 2 rows: streams [0 1] [2 3] [4 5] [6 7]; process 0 reads streams 0-1, process 1 2-3.
    assert batches_seen_by_each_process(8, 2, 2, 1, split_batches=False) == [
        [[0, 2], [1, 3]],
        [[4, 6], [5, 7]],
    ]
    # Same with 2 accumulation steps and 1 row: micro-batch 0 is streams 0 (process 0) and 1 (process 1),
    # micro-batch 1 is streams 2 and 3.
    assert batches_seen_by_each_process(8, 1, 2, 2, split_batches=False) == [
        [[0], [4], [1], [5]],
        [[2], [6], [3], [7]],
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blocks(byte_bpe_tokenizer) -> Dataset:
    raw = Dataset.from_dict({"text": [line + "\n" for line in tiny_corpus(120)]})
    return build_lm_dataset(raw, byte_bpe_tokenizer, BLOCK_SIZE, load_from_cache_file=False)


def make_model(vocab_size: int, seed: int = 0) -> LSTMLMForCausalLM:
    torch.manual_seed(seed)
    config = LSTMLMConfig(
        vocab_size=vocab_size,
        embedding_size=32,
        hidden_size=32,
        num_hidden_layers=2,
        embedding_dropout=0.0,
        hidden_dropout=0.0,
        output_dropout=0.0,
    )
    return LSTMLMForCausalLM(config)


class RecordingTBPTTTrainer(TBPTTTrainer):
    """Records what every compute_loss call saw and returned, to check against a forward pass by hand."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = result[0] if return_outputs else result
        self.records.append(
            {
                "training": model.training,
                "input_ids": inputs["input_ids"].clone(),
                "loss": loss.detach().clone(),
                "num_items_in_batch": num_items_in_batch,
            }
        )
        return result


def make_trainer(tmp_path, model, tokenizer, train, evaluation=None, **overrides) -> RecordingTBPTTTrainer:
    carry_state_in_eval = overrides.pop("carry_state_in_eval", True)
    args = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2,
        "learning_rate": 0.0,  # fixed weights: every step can be recomputed by hand with the same model
        "lr_scheduler_type": "constant",
        "num_train_epochs": 1,
        "save_strategy": "no",
        "logging_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    return RecordingTBPTTTrainer(
        model=model,
        args=TrainingArguments(**(args | overrides)),
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        data_collator=lm_data_collator(tokenizer, "causal"),
        carry_state_in_eval=carry_state_in_eval,
    )


def stream_batches(dataset: Dataset, num_streams: int) -> list[torch.Tensor]:
    """The batches of a `batchify` layout, built by hand: batch t row s = block t of stream s."""
    ids = torch.tensor(dataset["input_ids"])
    steps = len(ids) // num_streams
    streams = ids[: steps * num_streams].view(num_streams, steps, -1)
    return [streams[:, step] for step in range(steps)]


@torch.no_grad()
def losses_by_hand(model, batches, num_items=None, carry=True) -> list[torch.Tensor]:
    losses, state = [], None
    for input_ids in batches:
        extra = {} if num_items is None else {"num_items_in_batch": num_items}
        outputs = model(input_ids=input_ids, labels=input_ids, cache=state, use_cache=True, **extra)
        state = outputs.cache if carry else None
        losses.append(outputs.loss)
    return losses


def test_trainer_carries_the_state_from_block_to_block_and_resets_it_each_epoch(
    tmp_path, blocks, byte_bpe_tokenizer
):
    train = blocks.select(range(8))  # 2 streams of 4 blocks
    model = make_model(len(byte_bpe_tokenizer))
    trainer = make_trainer(tmp_path, model, byte_bpe_tokenizer, train, num_train_epochs=2)
    trainer.train()

    expected_batches = stream_batches(train, num_streams=2)
    records = trainer.records
    assert len(records) == 8  # 4 steps per epoch, 2 epochs
    for step, record in enumerate(records):
        assert torch.equal(record["input_ids"], expected_batches[step % 4]), step

    model.eval()
    num_items = records[0]["num_items_in_batch"]
    carried = losses_by_hand(model, expected_batches, num_items, carry=True)
    from_zero = losses_by_hand(model, expected_batches, num_items, carry=False)
    for step, record in enumerate(records):
        torch.testing.assert_close(record["loss"], carried[step % 4], rtol=1e-5, atol=1e-6)
    # From the second block on, the carried state changes the loss: the trainer did not start from zeros.
    for step in (1, 2, 3):
        assert abs(records[step]["loss"] - from_zero[step]) > 1e-3, step
    # The second epoch starts again from a zero state (it would otherwise continue from block 3's state).
    torch.testing.assert_close(records[4]["loss"], from_zero[0], rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_equals_the_larger_batch(tmp_path, blocks, byte_bpe_tokenizer):
    train = blocks.select(range(24))  # 4 streams of 6 blocks
    finals = []
    for per_device, accumulation in ((4, 1), (2, 2)):
        model = make_model(len(byte_bpe_tokenizer))
        trainer = make_trainer(
            tmp_path / f"ga{accumulation}",
            model,
            byte_bpe_tokenizer,
            train,
            per_device_train_batch_size=per_device,
            gradient_accumulation_steps=accumulation,
            learning_rate=1e-2,
        )
        trainer.train()
        assert trainer.state.global_step == 6
        finals.append({name: param.detach().clone() for name, param in model.named_parameters()})
        if accumulation == 2:
            # Micro-batch 0 of each step is streams 0-1, micro-batch 1 streams 2-3, block after block.
            expected = stream_batches(train, num_streams=4)
            for index, record in enumerate(trainer.records):
                step, slot = divmod(index, 2)
                assert torch.equal(record["input_ids"], expected[step][2 * slot : 2 * slot + 2])
    # Same streams, same order, same gradients: the two runs end with the same weights.
    for name, value in finals[0].items():
        torch.testing.assert_close(finals[1][name], value, rtol=1e-4, atol=1e-5, msg=name)
    initial = make_model(len(byte_bpe_tokenizer)).state_dict()
    assert any(not torch.equal(finals[0][name], initial[name]) for name in finals[0])  # the weights did move


@pytest.mark.parametrize("carry_state_in_eval", [True, False])
def test_evaluation_carries_the_state_across_blocks_unless_told_not_to(
    tmp_path, blocks, byte_bpe_tokenizer, carry_state_in_eval
):
    evaluation = blocks.select(range(8, 20))  # 2 streams of 6 blocks
    model = make_model(len(byte_bpe_tokenizer))
    trainer = make_trainer(
        tmp_path,
        model,
        byte_bpe_tokenizer,
        blocks.select(range(8)),
        evaluation,
        carry_state_in_eval=carry_state_in_eval,
    )
    first = trainer.evaluate()["eval_loss"]
    second = trainer.evaluate()["eval_loss"]
    assert first == pytest.approx(second, rel=1e-6)  # each evaluation starts its streams from zeros

    model.eval()
    if carry_state_in_eval:
        batches = stream_batches(evaluation, num_streams=2)
    else:
        ids = torch.tensor(evaluation["input_ids"])
        batches = list(ids.split(2))  # the plain Trainer's order
    assert all(torch.equal(r["input_ids"], b) for r, b in zip(trainer.records, batches * 2, strict=True))
    carried = torch.stack(losses_by_hand(model, batches, carry=True)).mean().item()
    from_zero = torch.stack(losses_by_hand(model, batches, carry=False)).mean().item()
    assert first == pytest.approx(carried if carry_state_in_eval else from_zero, rel=1e-5)
    assert abs(carried - from_zero) > 1e-3


# ---------------------------------------------------------------------------------------------------------------------
# Bad set-ups fail before training
# ---------------------------------------------------------------------------------------------------------------------


def test_bad_setups_are_refused_up_front(tmp_path, blocks, byte_bpe_tokenizer):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="streaming: false"):
        check_truncated_bptt_arguments("lstm_lm", streaming=True, training_args=args)
    with pytest.raises(ValueError, match="mini_gpt"):
        check_truncated_bptt_arguments("mini_gpt", streaming=False, training_args=args)
    grouped = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", train_sampling_strategy="group_by_length"
    )
    with pytest.raises(ValueError, match="train_sampling_strategy"):
        check_truncated_bptt_arguments("lstm_lm", streaming=False, training_args=grouped)

    model = make_model(len(byte_bpe_tokenizer))
    with pytest.raises(ValueError, match="streaming: false"):
        make_trainer(tmp_path, model, byte_bpe_tokenizer, blocks.select(range(8)).to_iterable_dataset())
    with pytest.raises(ValueError, match="training set has 3 blocks, fewer than its 4 parallel streams"):
        make_trainer(
            tmp_path, model, byte_bpe_tokenizer, blocks.select(range(3)), per_device_train_batch_size=4
        )
    with pytest.raises(ValueError, match="per_device_eval_batch_size"):
        make_trainer(tmp_path, model, byte_bpe_tokenizer, blocks.select(range(8)), blocks.select(range(1)))
