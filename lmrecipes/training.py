"""Trainer additions shared by every script: a stop on non-finite loss, safe checkpoints, perplexity in the logs.

These are small overrides of transformers' `Trainer`, not a training loop of our own. They exist because the Trainer
(5.x) has no built-in for them:
- it logs losses but not perplexity, the unit language models are compared in;
- by default it hides a NaN/inf loss (`logging_nan_inf_filter`) and keeps training and saving;
- it writes `checkpoint-N` in place, so a crash mid-save leaves a folder that `get_last_checkpoint` would resume from.
`HubPushMixin` (lmrecipes.hub) keeps the Trainer's own Hub pushes self-contained and lmrecipes-carded.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

from transformers import Seq2SeqTrainer, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from lmrecipes.hub import HubPushMixin

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "checkpoint_complete"
_CHECKPOINT_RE = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def perplexity(loss: float) -> float:
    """exp(loss), saturating instead of overflowing for a diverged model."""
    return math.exp(loss) if loss < 700 else float("inf")


class SafeTrainingMixin:
    """Stops on a non-finite loss, marks checkpoints complete, and (for language models) logs perplexity."""

    nonfinite_loss_step: int | None = None
    report_perplexity = True  # exp(loss) means something for language modelling, not for a classifier's loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if self.report_perplexity:
            for key in [k for k in logs if k == "loss" or k.endswith("_loss")]:
                logs[key.removesuffix("loss") + "perplexity"] = perplexity(logs[key])
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            self.nonfinite_loss_step = self.state.global_step
            logger.error(
                "loss is %s at step %d: stopping without saving; the last good checkpoint is kept",
                loss,
                self.state.global_step,
            )
            self.control.should_training_stop = True
            self.control.should_save = False
            self.control.should_evaluate = False
        super().log(logs, *args, **kwargs)

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        # Every process writes part of a checkpoint (its RNG state at least): mark it complete only once all are done.
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            folder = (
                Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            mark_checkpoint_complete(folder)

    def train(self, *args, **kwargs):
        # The default filter replaces a NaN/inf loss by the running mean in the logs, which would hide it from `log`.
        self.args.logging_nan_inf_filter = False
        result = super().train(*args, **kwargs)
        if self.nonfinite_loss_step is not None:
            raise NonFiniteLossError(
                f"training stopped: non-finite loss at step {self.nonfinite_loss_step}. The last complete checkpoint "
                f"in {self.args.output_dir} is kept; lower the learning rate or check the data, then resume."
            )
        return result


class LMTrainer(HubPushMixin, SafeTrainingMixin, Trainer):
    """The Trainer of the pretraining script: language modelling, perplexity in the logs."""


class TaskTrainer(LMTrainer):
    """The Trainer of the classification and extractive-QA scripts: their losses have no perplexity."""

    report_perplexity = False


class LMSeq2SeqTrainer(HubPushMixin, SafeTrainingMixin, Seq2SeqTrainer):
    """The Seq2SeqTrainer of the translation script (token-level perplexity of the target is logged)."""


def mark_checkpoint_complete(folder: Path) -> None:
    """Write the marker last, through a rename, so that it exists only once the whole folder is on disk."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    staging = folder / f".{COMPLETE_MARKER}.tmp"
    staging.write_text("complete\n")
    os.replace(staging, folder / COMPLETE_MARKER)


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` that was completely written; incomplete ones are skipped with a warning.

    Use this instead of `transformers.trainer_utils.get_last_checkpoint`, which would also return a folder that a
    crash left half-written.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    complete = []
    for folder in output_dir.iterdir():
        match = _CHECKPOINT_RE.match(folder.name)
        if not match or not folder.is_dir():
            continue
        if (folder / COMPLETE_MARKER).is_file():
            complete.append((int(match.group(1)), folder))
        else:
            logger.warning("ignoring %s: it was not completely written (crash during a save?)", folder)
    return str(max(complete)[1]) if complete else None
