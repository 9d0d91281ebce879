"""Making `accelerate launch` start the processes a recipe's accelerate config asks for, on CPUs too, and stop them
with it."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

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


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_launcher() -> None:
    """Make this worker end when the `accelerate launch` (or torchrun) process that started it dies, even by kill -9.

    Neither launcher can pass on a SIGKILL, so its workers would train on, sharing the output folder with the run
    restarted there. Linux lets a child ask for a signal on its parent's death (prctl PR_SET_PDEATHSIG); elsewhere
    this does nothing. A process started by hand (python scripts/..., nohup) is left alone.
    """
    launched = "ACCELERATE_MIXED_PRECISION" in os.environ or "LOCAL_RANK" in os.environ
    if not launched or not sys.platform.startswith("linux"):
        return
    launcher = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return  # not allowed here (a sandbox): the workers then outlive their launcher as before
    if os.getppid() != launcher:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


# The pip package each tracker needs, where the extra of lmrecipes that installs it exists.
TRACKER_EXTRAS = {"tensorboard": "tensorboard", "trackio": "trackio"}


def check_trackers(training_args) -> None:
    """Fail before any work when a `report_to` tracker is unknown or its package is not installed (the Trainer
    would only fail when it builds its callbacks, after the data and the model are ready)."""
    from transformers.integrations import integration_utils

    for tracker in training_args.report_to or []:
        if tracker not in integration_utils.INTEGRATION_TO_CALLBACK:
            known = ", ".join(sorted(integration_utils.INTEGRATION_TO_CALLBACK))
            raise RecipeError(f"report_to: unknown tracker {tracker!r}; transformers supports {known}")
        name = {"azure_ml": "azureml", "comet_ml": "comet"}.get(tracker, tracker)
        is_available = getattr(integration_utils, f"is_{name}_available", None)
        if is_available is not None and not is_available():
            extra = TRACKER_EXTRAS.get(tracker)
            install = f"pip install 'lmrecipes[{extra}]'" if extra else f"install {tracker}"
            raise RecipeError(
                f"report_to: {tracker} is not installed here: {install}, or drop it from report_to"
            )
