"""Making `accelerate launch` start the processes a recipe's accelerate config asks for, on CPUs too."""

from __future__ import annotations

import os

import torch

from lmrecipes.errors import RecipeError


def use_cpu_when_torchrun_has_no_accelerator() -> None:
    """Make torchrun workers on a CPU-only machine join one gloo process group instead of each training alone.

    accelerate 1.15 starts several local CPU processes only through its torchrun path (accelerate_configs/
    multi_cpu.yaml), and that path does not pass `use_cpu` on to the workers: without it `PartialState` finds no GPU
    and falls back to "not distributed" (world size 1 in every worker). ACCELERATE_USE_CPU is the variable that both
    `Accelerator` and `TrainingArguments` read, so it must be set before either is built.
    """
    launched_by_torchrun = "LOCAL_RANK" in os.environ
    if launched_by_torchrun and not torch.accelerator.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def check_world_size(training_args) -> None:
    """Fail loudly if the launcher started N processes but the Trainer sees fewer (each would train alone)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        raise RecipeError(
            f"{launched} processes were launched but the Trainer sees a world of {training_args.world_size}: "
            "on a CPU-only machine launch with accelerate_configs/multi_cpu.yaml (or set ACCELERATE_USE_CPU=true)."
        )
