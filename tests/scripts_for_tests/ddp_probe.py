"""Report what `accelerate launch` gave each process: run it under a launch config, then read the reports.

    accelerate launch --config_file accelerate_configs/multi_cpu.yaml tests/scripts_for_tests/ddp_probe.py OUT_DIR

Every process that starts writes OUT_DIR/probe-<pid>.json (named by pid, not rank, so that two processes that both
wrongly believe they are rank 0 still leave two reports). A report holds:
  - "env": the launcher variables the process was started with (RANK, WORLD_SIZE, ...);
  - "accelerate": what a Trainer-free script sees through `Accelerator()`, and the result of an all-reduce;
  - "trainer": what `transformers.TrainingArguments` (hence the Trainer) sees: world size, rank, device;
  - "train" (with --train): a few Trainer steps of a tiny GPT-2 on an IterableDataset, to show that the model is
    wrapped in DDP, that ranks get different batches and that their weights stay identical.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

# The same call the lmrecipes scripts make before building TrainingArguments (see lmrecipes/launch.py).
from lmrecipes.launch import die_with_launcher, use_cpu_when_torchrun_has_no_accelerator

LAUNCHER_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "OMP_NUM_THREADS",
    "ACCELERATE_USE_CPU",
    "ACCELERATE_MIXED_PRECISION",
)


def accelerate_report() -> dict:
    from accelerate import Accelerator

    accelerator = Accelerator()
    state = accelerator.state
    # Each rank contributes rank + 1, so the sum over n ranks is n(n+1)/2: it proves the ranks really talk.
    contribution = torch.tensor([float(accelerator.process_index + 1)], device=accelerator.device)
    reduced = accelerator.reduce(contribution, reduction="sum")
    process_group_backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else None
    return {
        "distributed_type": str(state.distributed_type).split(".")[-1],
        "backend": state.backend,
        "process_group_backend": process_group_backend,
        "num_processes": accelerator.num_processes,
        "process_index": accelerator.process_index,
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "all_reduce_sum": reduced.item(),
    }


def trainer_report(out_dir: Path) -> dict:
    from transformers import TrainingArguments

    training_args = TrainingArguments(output_dir=str(out_dir / "trainer"), report_to="none")
    return {
        "world_size": training_args.world_size,
        "process_index": training_args.process_index,
        "local_process_index": training_args.local_process_index,
        "device": str(training_args.device),
        "parallel_mode": str(training_args.parallel_mode).split(".")[-1],
        "n_gpu": training_args.n_gpu,
        "mixed_precision": training_args.mixed_precision,
    }


class TokenBlocks(torch.utils.data.IterableDataset):
    """A stream of distinct fixed-length token blocks, like the packed blocks of a pretraining run."""

    def __init__(self, num_blocks: int, block_size: int, vocab_size: int):
        self.num_blocks, self.block_size, self.vocab_size = num_blocks, block_size, vocab_size

    def __iter__(self):
        for index in range(self.num_blocks):
            generator = torch.Generator().manual_seed(index)
            input_ids = torch.randint(0, self.vocab_size, (self.block_size,), generator=generator)
            yield {"input_ids": input_ids, "labels": input_ids.clone()}


def train_report(out_dir: Path) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=128, n_positions=16, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    model = GPT2LMHeadModel(config)  # same seed on every rank, so the ranks start from identical weights

    first_batch_ids: list[torch.Tensor] = []

    def remember_first_batch(module, inputs, output):
        if not first_batch_ids:
            first_batch_ids.append(inputs[0].detach().clone())

    model.transformer.wte.register_forward_hook(remember_first_batch)
    training_args = TrainingArguments(
        output_dir=str(out_dir / "trainer"),
        report_to="none",
        per_device_train_batch_size=2,
        max_steps=3,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        dataloader_pin_memory=False,  # nothing to pin for on a CPU
        # Every parameter of the model gets a gradient, so DDP need not search the graph for unused ones.
        ddp_find_unused_parameters=False,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=TokenBlocks(64, 16, config.vocab_size))
    result = trainer.train()

    # Fingerprints that the test compares across ranks.
    parameter_sum = sum(p.detach().double().sum().item() for p in trainer.model.parameters())
    return {
        "wrapped_model_class": type(trainer.model_wrapped).__name__,
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "first_batch_token_sum": int(first_batch_ids[0].sum()),
        "first_batch_shape": list(first_batch_ids[0].shape),
        "parameter_sum": parameter_sum,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder where each process writes probe-<pid>.json")
    parser.add_argument("--train", action="store_true", help="also run a few DDP Trainer steps")
    parser.add_argument(
        "--linger",
        type=float,
        default=0,
        help="after the report, ask to die with the launcher and sleep so long",
    )
    args = parser.parse_args()

    use_cpu_when_torchrun_has_no_accelerator()
    report = {"pid": os.getpid(), "env": {name: os.environ.get(name) for name in LAUNCHER_ENV}}
    report["accelerate"] = accelerate_report()
    report["trainer"] = trainer_report(args.out_dir)
    if args.train:
        report["train"] = train_report(args.out_dir)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.linger:
        die_with_launcher()
    (args.out_dir / f"probe-{os.getpid()}.json").write_text(json.dumps(report, indent=2))
    time.sleep(args.linger)


if __name__ == "__main__":
    main()
