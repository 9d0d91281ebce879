"""Trainer additions shared by every script: a stop on non-finite loss, safe checkpoints, perplexity in the logs.

These are small overrides of transformers' `Trainer`, not a training loop of our own. They exist because the Trainer
(5.x) has no built-in for them:
- it logs losses but not perplexity, the unit language models are compared in;
- by default it hides a NaN/inf loss (`logging_nan_inf_filter`) and keeps training and saving;
- it writes `checkpoint-N` in place, so a crash mid-save leaves a folder that `get_last_checkpoint` would resume from.
`HubPushMixin` (lmrecipes.hub) keeps the Trainer's own Hub pushes self-contained and lmrecipes-carded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import Seq2SeqTrainer, Trainer, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from lmrecipes.cards import RECIPE_FILENAME, build_model_card, load_recipe, save_recipe
from lmrecipes.errors import RecipeError
from lmrecipes.hub import HubPushMixin, prepare_trainer_push, push_trained_model
from lmrecipes.launch import check_world_size
from lmrecipes.secrets import scrub_secrets

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

    def __init__(self, *args, report_perplexity: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        # exp(loss) means something for language modelling, not for a classifier's loss.
        self.report_perplexity = report_perplexity

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


class RecipeTrainer(HubPushMixin, SafeTrainingMixin, Trainer):
    """The Trainer of every script; `report_perplexity=False` for tasks whose loss has no perplexity."""


class RecipeSeq2SeqTrainer(HubPushMixin, SafeTrainingMixin, Seq2SeqTrainer):
    """The Seq2SeqTrainer of the translation script (token-level perplexity of the target is logged)."""


# Recipe fields that change how a run is watched or published, not what it trains: a resume may change them.
RUN_SETTING_FIELDS = frozenset(
    {
        "output_dir",
        "resume_from_checkpoint",
        "disable_tqdm",
        "logging_steps",
        "report_to",
        "push_to_hub",
        "hub_model_id",
        "hub_strategy",
        "hub_private_repo",
        "dataloader_num_workers",
    }
)


def start_run(training_args, recipe: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The start of every recipe, before any data or model work: launch checks, the output folder, seed, Hub token.

    Returns the results of this recipe's finished run when the output folder holds one (the script then has nothing
    to do), else None. Nothing is written: a recipe that fails its checks leaves no output folder behind.
    """
    check_world_size(training_args)
    if training_args.per_device_train_batch_size < 1:
        raise RecipeError(
            f"per_device_train_batch_size must be >= 1, got {training_args.per_device_train_batch_size}"
        )
    if not torch.accelerator.is_available():
        training_args.dataloader_pin_memory = False  # pinning is for host-to-GPU copies; on CPU torch warns
    set_seed(training_args.seed)
    prepare_trainer_push(training_args)  # a push without a token fails now, not after training
    return check_output_folder(Path(training_args.output_dir), recipe, training_args)


def record_recipe(training_args, recipe: Mapping[str, Any] | None) -> None:
    """Put the recipe on record (recipe.yaml) before the run's first file, so that all it writes is tied to it.

    Never rewritten once the run has written anything else: a resume keeps the record of the run it continues.
    """
    recipe_file = Path(training_args.output_dir) / RECIPE_FILENAME
    if recipe is None or not training_args.should_save:
        return
    if not recipe_file.is_file() or not _holds_work(recipe_file.parent):
        save_recipe(recipe_file.parent, recipe)


def _holds_work(folder: Path) -> bool:
    return folder.is_dir() and any(path.name != RECIPE_FILENAME for path in folder.iterdir())


def _as_recorded(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as recipe.yaml holds it (secrets scrubbed, through YAML), so that the two compare like for like."""
    return yaml.safe_load(yaml.safe_dump(scrub_secrets(dict(recipe)), sort_keys=False)) or {}


def check_output_folder(
    output_dir: Path, recipe: Mapping[str, Any] | None, training_args
) -> dict[str, float] | None:
    """Refuse a folder that holds another recipe's work, naming the fields that differ; return the results of this
    recipe's finished run when there is one; otherwise (a new folder, or this recipe's interrupted run) None."""
    if output_dir.exists() and not output_dir.is_dir():
        raise RecipeError(f"output_dir={str(output_dir)!r} is a file, not a folder")
    if recipe is None or not _holds_work(output_dir):
        return None
    recorded = load_recipe(output_dir)
    if recorded is None:
        logger.warning(
            "%s holds files but no %s: cannot tell which recipe made them; continuing as if this one did",
            output_dir,
            RECIPE_FILENAME,
        )
        return None
    current = _as_recorded(recipe)
    differing = [
        key
        for key in dict.fromkeys([*recorded, *current])
        if key not in RUN_SETTING_FIELDS and recorded.get(key) != current.get(key)
    ]
    if differing:
        changes = "; ".join(
            f"{key}: {recorded.get(key)!r} there, {current.get(key)!r} now" for key in differing
        )
        raise RecipeError(
            f"output_dir {output_dir} holds the work of another recipe ({changes}): choose another output_dir, or "
            "delete that folder to start over"
        )
    results = output_dir / "all_results.json"
    if results.is_file() and not training_args.resume_from_checkpoint:
        logger.warning(
            "%s already holds this recipe's finished run (all_results.json): nothing to do; delete the folder "
            "to train again",
            output_dir,
        )
        return json.loads(results.read_text(encoding="utf-8"))
    return None


def train_evaluate_and_save(
    trainer: Trainer,
    tokenizer,
    recipe: Mapping[str, Any] | None,
    extra_eval_metrics: Callable[[Trainer], dict[str, float]] | None = None,
    save_task_outputs: Callable[[Trainer, dict[str, float]], dict[str, float]] | None = None,
    card_tags: list[str] | None = None,
) -> dict[str, float]:
    """The end of every recipe: train (resuming from the last complete checkpoint), save, evaluate, write
    all_results.json and the model card, and push when the recipe asks for it.

    With `load_best_model_at_end` the Trainer has reloaded the best checkpoint when training ends, so the saved
    model and the final evaluation are the best checkpoint's. `extra_eval_metrics(trainer)` adds metrics computed on
    the main process after the Trainer's evaluation (pretraining adds the published-unit scores).
    `save_task_outputs(trainer, metrics)` runs on every process after that, before the card and the push: a task's
    own outputs (translation: the test split, hypotheses, the target tokenizer); the metrics it returns are added.
    """
    args = trainer.args
    output_dir = Path(args.output_dir)
    record_recipe(args, recipe)  # for cards built at push time, too
    # An interrupted run resumes by itself from its last complete checkpoint, stream position included.
    checkpoint = args.resume_from_checkpoint or last_complete_checkpoint(output_dir)
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    logger.info(
        "training on %s, %d process(es), mixed precision: %s",
        args.device,
        args.world_size,
        trainer.accelerator.mixed_precision,
    )
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    if trainer.state.best_model_checkpoint:
        logger.info(
            "best checkpoint: %s (%s)", trainer.state.best_model_checkpoint, trainer.state.best_metric
        )

    trainer.save_model()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    eval_metrics = trainer.evaluate()
    if extra_eval_metrics is not None and trainer.is_world_process_zero():
        eval_metrics |= extra_eval_metrics(trainer)
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)  # also merged into all_results.json, with the train metrics
    metrics = {**train_result.metrics, **eval_metrics}
    if save_task_outputs is not None:
        metrics |= save_task_outputs(trainer, metrics)
    if args.should_save:
        tokenizer.save_pretrained(output_dir)
        build_model_card(output_dir, recipe, repo_id=args.hub_model_id, tags=card_tags)
    push_trained_model(trainer)
    return metrics


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
