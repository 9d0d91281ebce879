"""Trainer additions shared by every script: a stop on non-finite loss, safe checkpoints, perplexity in the logs.

These are small overrides of transformers' `Trainer`, not a training loop of our own. They exist because the Trainer
(5.x) has no built-in for them:
- it logs losses but not perplexity, the unit language models are compared in;
- by default it hides a NaN/inf loss (`logging_nan_inf_filter`) and keeps training and saving;
- it writes `checkpoint-N` in place, so a crash mid-save leaves a folder that `get_last_checkpoint` would resume from;
- on resume it skips batches as if a stream were one pass long, so a stream that max_steps loops over resumes wrong;
- it has no Muon, and logs neither tokens per second without a host sync per step nor model FLOPs utilisation.
`HubPushMixin` (lmrecipes.hub) keeps the Trainer's own Hub pushes self-contained and lmrecipes-carded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no folder lock
    fcntl = None

import torch
import yaml
from torch.utils.data import SequentialSampler
from transformers import (
    GenerationMixin,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainerState,
    TrainingArguments,
    set_seed,
)
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_pt_utils import nested_gather
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, has_length, rotate_checkpoints

from lmrecipes.cards import RECIPE_FILENAME, build_model_card, load_recipe, save_recipe
from lmrecipes.errors import RecipeError
from lmrecipes.families import FAMILIES
from lmrecipes.hub import HubPushMixin, prepare_trainer_push, push_trained_model
from lmrecipes.launch import check_trackers, check_world_size, die_with_launcher
from lmrecipes.modeling import generate_sample
from lmrecipes.optimization import build_muon_with_adamw
from lmrecipes.secrets import scrub_secrets
from lmrecipes.throughput import (
    matmul_weight_count,
    measured_matmul_peaks,
    sparse_head_weight_count,
    training_flops_per_token,
)

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "checkpoint_complete"
LOSS_RECORD_FILENAME = "train_loss_sum.json"  # in each checkpoint: the losses of the steps before it
_CHECKPOINT_RE = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


@dataclass
class RecipeOptions:
    """lmrecipes' training options, set in a recipe like any TrainingArguments field."""

    muon_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Train the weight matrices of the model's body with torch.optim.Muon at this learning rate "
            "(AdamW at learning_rate keeps the embeddings, output head, norms and biases); None: AdamW for all. "
            "The schedule scales both rates."
        },
    )
    muon_momentum: float = field(default=0.95, metadata={"help": "Muon's (Nesterov) momentum."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Delete what output_dir holds (another recipe's work, a finished or interrupted run) and start "
            "over; without it such a folder is refused, resumed or reported finished."
        },
    )
    sample_prompts: list[str] = field(
        default_factory=lambda: ["The"],
        metadata={
            "help": "Causal LMs: prompts sampled from at each evaluation (seeded top-k), printed and logged."
        },
    )
    sample_max_new_tokens: int = field(
        default=40,
        metadata={"help": "Tokens generated per sample at each evaluation; 0 turns the samples off."},
    )
    # TrainingArguments types it `None | str | list[str]`, which HfArgumentParser reads as a single string: as a
    # list, a recipe's `report_to: [tensorboard, trackio]` and `--report_to tensorboard trackio` both work.
    report_to: list[str] = field(
        default_factory=lambda: ["none"],
        metadata={"help": "Trackers that receive the logs: tensorboard, trackio, ... ('none': no tracker)."},
    )
    peak_tflops: float | None = field(
        default=None,
        metadata={
            "help": "Peak TFLOP/s of the hardware, for the logged model FLOPs utilisation (mfu); None: measured at "
            "the first log, as the fastest of a few matmuls in the training precision."
        },
    )


@dataclass
class RecipeTrainingArguments(RecipeOptions, TrainingArguments):
    """TrainingArguments with lmrecipes' options (RecipeOptions)."""


@dataclass
class RecipeSeq2SeqTrainingArguments(RecipeOptions, Seq2SeqTrainingArguments):
    """Seq2SeqTrainingArguments with lmrecipes' options (RecipeOptions)."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def perplexity(loss: float) -> float:
    """exp(loss), saturating instead of overflowing for a diverged model."""
    return math.exp(loss) if loss < 700 else float("inf")


class RecipeOptionsMixin:
    """What RecipeOptions asks of the Trainer, and the logs a language model is watched by: Muon, tokens per second
    and MFU, perplexity, and (causal LMs) sample generations at each evaluation."""

    def __init__(self, *args, report_perplexity: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        # exp(loss) means something for language modelling, not for a classifier's loss.
        self.report_perplexity = report_perplexity
        self._matmul_weights = matmul_weight_count(self.model)
        self._sparse_head_weights = sparse_head_weight_count(self.model)
        self._peak_flops: float | None = None
        self._reset_throughput()

    def create_optimizer(self, model=None):
        if self.optimizer is None and getattr(self.args, "muon_learning_rate", None) is not None:
            model = self.accelerator.unwrap_model(self.model if model is None else model)
            decayed = set(self.get_decay_parameter_names(model))
            self.optimizer = build_muon_with_adamw(model, self.args, decayed)
        return super().create_optimizer(model)

    def train(self, *args, **kwargs):
        self._reset_throughput()
        return super().train(*args, **kwargs)

    def _get_eval_sampler(self, eval_dataset):
        # Under train_sampling_strategy: group_by_length, transformers (5.23+) batches evaluation by length too, in
        # a shuffled order, and predictions carry no row indices: answers decoded from windows (SQuAD, review
        # windows) and translations would not line up with their rows. Evaluation is sequential, as without length
        # grouping; the training batches keep theirs.
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        # Distributed: None lets accelerate shard the rows in order and gather them back in order.
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def training_step(self, model, inputs, *args, **kwargs):
        # Counted from the batch's shape on the host: no device sync per step (padding counts as tokens).
        input_ids = inputs.get("input_ids")
        if input_ids is not None:
            self._tokens_since_log += input_ids.numel()
            labelled_fraction = 1.0
            if self._sparse_head_weights and inputs.get("labels") is not None:
                # A sparse-prediction head works at the labelled positions only (one sync: it indexes them anyway).
                labelled_fraction = (inputs["labels"] != -100).float().mean().item()
            self._flops_since_log += input_ids.numel() * training_flops_per_token(
                self.model,
                input_ids.shape[-1],
                self._matmul_weights,
                labelled_fraction,
                self._sparse_head_weights,
            )
        return super().training_step(model, inputs, *args, **kwargs)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs:  # a training log: the throughput of the steps since the previous one
            logs.update(self._throughput_logs())
            self._reset_throughput()
        if self.report_perplexity:
            for key in [k for k in logs if k == "loss" or k.endswith("_loss")]:
                logs[key.removesuffix("loss") + "perplexity"] = perplexity(logs[key])
        super().log(logs, *args, **kwargs)

    def evaluate(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            metrics = super().evaluate(*args, **kwargs)
            self._log_samples()
            return metrics
        finally:
            self._pause_throughput_clock(started)

    def _log_samples(self) -> None:
        """Sample from a causal LM at each evaluation (main process): printed, kept in trainer_state.json's log
        history (the model card shows the last ones) and sent to the trackers as text."""
        model = self.accelerator.unwrap_model(self.model)
        new_tokens = getattr(self.args, "sample_max_new_tokens", 0)
        family = FAMILIES.get(model.config.model_type)
        if (
            not new_tokens
            or not self.is_world_process_zero()
            or not isinstance(model, GenerationMixin)
            or family is None
            or family.objective != "causal"
            or self.processing_class is None
        ):
            return
        samples = {
            f"eval_sample_{index}": generate_sample(
                model, self.processing_class, prompt, new_tokens, seed=self.args.seed
            )
            for index, prompt in enumerate(self.args.sample_prompts)
        }
        for text in samples.values():
            logger.info("sample at step %d: %r", self.state.global_step, text)
        self.log(samples)

    def _save_checkpoint(self, model, trial) -> None:
        started = time.perf_counter()
        super()._save_checkpoint(model, trial)
        self._pause_throughput_clock(started)

    # ----------------------------------------------------------------------------------------- throughput

    def _reset_throughput(self) -> None:
        self._throughput_start = time.perf_counter()
        self._tokens_since_log = 0
        self._flops_since_log = 0.0

    def _pause_throughput_clock(self, since: float) -> None:
        """Leave the time since `since` (an evaluation, a save) out of the next logged tokens per second."""
        self._throughput_start += time.perf_counter() - since

    def _throughput_logs(self) -> dict[str, float]:
        """tokens_per_second (all processes) and mfu (each process against one device's peak) since the last log."""
        seconds = time.perf_counter() - self._throughput_start
        if not self._tokens_since_log or seconds <= 0:
            return {}
        tokens_per_second = self._tokens_since_log * self.args.world_size / seconds
        mfu = self._flops_since_log / seconds / self._hardware_peak_flops()
        return {"tokens_per_second": round(tokens_per_second, 1), "mfu": round(mfu, 4)}

    def _hardware_peak_flops(self) -> float:
        if self._peak_flops is None and getattr(self.args, "peak_tflops", None):
            self._peak_flops = self.args.peak_tflops * 1e12
        if self._peak_flops is None:
            started = time.perf_counter()
            dtype = torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else torch.float32
            size = 1024 if self.args.device.type == "cpu" else 8192
            self._peak_flops = max(measured_matmul_peaks(self.args.device, dtype, size=size).values())
            logger.info(
                "measured matmul peak: %.1f TFLOP/s (the logged mfu's 100%%)", self._peak_flops / 1e12
            )
            self._pause_throughput_clock(started)
        return self._peak_flops


class SafeTrainingMixin:
    """Stops on a non-finite loss, marks checkpoints complete, keeps the whole run's loss across resumes, and
    resumes a stream in the right pass."""

    nonfinite_loss_step: int | None = None
    _loss_sum_before_resume: float | None = 0.0  # the losses of the steps a resumed run does not train again

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
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
        # The Trainer deletes checkpoints beyond save_total_limit at the end of its save, before ours is marked
        # complete: a crash then would leave no complete checkpoint. Rotate only once the new one is complete.
        save_total_limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = save_total_limit
        # Every process writes part of a checkpoint (its RNG state at least): mark it complete only once all are done.
        self.accelerator.wait_for_everyone()
        loss_sum = self._whole_run_loss_sum()  # on every process: it gathers
        if self.args.should_save:
            run_dir = Path(self._get_output_dir(trial=trial))
            folder = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            write_loss_record(folder, self.state.global_step, loss_sum)
            mark_checkpoint_complete(folder)
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )

    def _whole_run_loss_sum(self) -> float | None:
        """The sum of the per-step training losses since step 0, across resumes (None if a resume lost the count).

        Called on every process: the part not yet logged is averaged over processes as the Trainer's logs do.
        """
        not_logged = nested_gather(self._tr_loss, self.args.parallel_mode).mean().item()
        if self._loss_sum_before_resume is None:
            return None
        return self._loss_sum_before_resume + self._total_loss_scalar + not_logged

    def _finalize_training(self, trial, num_train_samples, start_time):
        # The Trainer's train_loss averages only the steps of this `train()` call, so after a resume it would
        # describe part of the run: fold in the earlier steps' losses so that it is the whole run's mean.
        resumed_steps = self._initial_global_step
        if (
            resumed_steps
            and self._loss_sum_before_resume is not None
            and self.state.global_step > resumed_steps
        ):
            whole_sum = self._loss_sum_before_resume + self._total_loss_scalar + self._tr_loss.item()
            self._tr_loss -= self._tr_loss
            steps_now = self.state.global_step - resumed_steps
            self._total_loss_scalar = whole_sum * steps_now / self.state.global_step  # / steps_now = mean
        return super()._finalize_training(trial, num_train_samples, start_time)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        # The default filter replaces a NaN/inf loss by the running mean in the logs, which would hide it from `log`.
        self.args.logging_nan_inf_filter = False
        self._loss_sum_before_resume = 0.0
        if isinstance(resume_from_checkpoint, str):  # our scripts always name the checkpoint
            self._loss_sum_before_resume = read_loss_record(Path(resume_from_checkpoint))
            if self._loss_sum_before_resume is None:
                logger.warning(
                    "%s has no record of the earlier steps' losses: train_loss will cover the resumed steps only",
                    resume_from_checkpoint,
                )
        result = super().train(resume_from_checkpoint, *args, **kwargs)
        if self.nonfinite_loss_step is not None:
            raise NonFiniteLossError(
                f"training stopped: non-finite loss at step {self.nonfinite_loss_step}. The last complete checkpoint "
                f"in {self.args.output_dir} is kept; lower the learning rate or check the data, then resume."
            )
        return result

    def _init_training_state(
        self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
    ):
        # A stream has no length, so the Trainer takes one epoch to be max_steps steps long and resumes by skipping
        # global_step batches of epoch 0: right while the stream's first pass lasts, wrong once max_steps loops over
        # it (the skip runs out of pass 0, and training goes on from the start of pass 1). Its state.epoch records
        # the real place, pass + batches drawn from it / (max_steps x accumulation): skip those batches of that pass
        # (replayed, so the shuffle buffer refills as it did; datasets' state_dict would not restore the buffer).
        epochs_trained, batches_trained = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        if (
            resume_from_checkpoint is None
            or self.args.ignore_data_skip
            or has_length(self.train_dataset)
            or not self.state.epoch
        ):
            return epochs_trained, batches_trained
        saved = TrainerState.load_from_json(os.path.join(resume_from_checkpoint, TRAINER_STATE_NAME))
        return stream_position(self.state.epoch, saved.max_steps * self.args.gradient_accumulation_steps)


def stream_position(epoch: float, batches_per_epoch: int) -> tuple[int, int]:
    """The pass over a stream and the batches drawn from it, from the Trainer's `state.epoch` for a dataset without
    length: pass + batches / batches_per_epoch, where batches_per_epoch is max_steps x gradient_accumulation_steps."""
    return divmod(round(epoch * batches_per_epoch), batches_per_epoch)


class RecipeTrainer(HubPushMixin, RecipeOptionsMixin, SafeTrainingMixin, Trainer):
    """The Trainer of every script; `report_perplexity=False` for tasks whose loss has no perplexity."""


class RecipeSeq2SeqTrainer(HubPushMixin, RecipeOptionsMixin, SafeTrainingMixin, Seq2SeqTrainer):
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
        "overwrite_output_dir",
        "sample_prompts",
        "sample_max_new_tokens",
        "peak_tflops",
    }
)


def start_run(training_args, recipe: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The start of every recipe, before any data or model work: launch checks, the output folder, seed, Hub token.

    Returns the results of this recipe's finished run when the output folder holds one (the script then has nothing
    to do), else None. Nothing is written: a recipe that fails its checks leaves no output folder behind.
    """
    check_world_size(training_args)
    check_trackers(
        training_args
    )  # a missing tracker package fails now, not once the data and model are ready
    die_with_launcher()  # a killed `accelerate launch` takes its workers with it, freeing the folder
    if training_args.per_device_train_batch_size < 1:
        raise RecipeError(
            f"per_device_train_batch_size must be >= 1, got {training_args.per_device_train_batch_size}"
        )
    if not torch.accelerator.is_available():
        training_args.dataloader_pin_memory = False  # pinning is for host-to-GPU copies; on CPU torch warns
    set_seed(training_args.seed)
    prepare_trainer_push(training_args)  # a push without a token fails now, not after training
    output_dir = Path(training_args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise RecipeError(f"output_dir={str(output_dir)!r} is a file, not a folder")
    if training_args.should_save:
        hold_output_folder(output_dir)
    if getattr(training_args, "overwrite_output_dir", False):
        with training_args.main_process_first(desc="emptying the output folder"):  # the others wait for it
            if training_args.should_save and _holds_work(output_dir):
                empty_output_folder(output_dir)
        return None
    return check_output_folder(output_dir, recipe, training_args)


def empty_output_folder(output_dir: Path) -> None:
    """Delete everything in the output folder (not the folder itself: this run holds its lock)."""
    logger.warning("overwrite_output_dir: deleting the earlier run's files in %s", output_dir)
    for path in output_dir.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


_held_folders: dict[Path, int] = {}  # output folder -> the open descriptor whose lock this process holds


def hold_output_folder(output_dir: Path) -> None:
    """Lock an existing output folder for this run, or stop if another run holds it.

    The lock (flock on the folder itself, so nothing is written into it) ends with the process however it ends,
    kill -9 included; it is advisory and where the platform has no flock (Windows) there is none.
    """
    if fcntl is None or not output_dir.is_dir() or output_dir.resolve() in _held_folders:
        return
    descriptor = os.open(output_dir, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise RecipeError(
            f"output_dir {output_dir} is in use by another run that is still going (or its workers are): wait for "
            "it to end, stop it, or choose another output_dir"
        ) from None
    _held_folders[output_dir.resolve()] = descriptor


def record_recipe(training_args, recipe: Mapping[str, Any] | None) -> None:
    """Create the output folder, hold it for this run, and put the recipe on record (recipe.yaml) before the run's
    first file, so that all it writes is tied to it.

    Never rewritten once the run has written anything else: a resume keeps the record of the run it continues.
    """
    if not training_args.should_save:
        return
    recipe_file = Path(training_args.output_dir) / RECIPE_FILENAME
    recipe_file.parent.mkdir(parents=True, exist_ok=True)
    hold_output_folder(recipe_file.parent)
    if recipe is None:
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
            "start over there with --overwrite_output_dir true"
        )
    results = output_dir / "all_results.json"
    if results.is_file() and not training_args.resume_from_checkpoint:
        logger.warning(
            "%s already holds this recipe's finished run (all_results.json): nothing to do; train again with "
            "--overwrite_output_dir true",
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


def write_loss_record(folder: Path, step: int, loss_sum: float | None) -> None:
    """Keep the sum of the training losses so far in the checkpoint, for a resumed run's whole-run train_loss."""
    if loss_sum is not None:
        record = {"global_step": step, "train_loss_sum": loss_sum}
        (folder / LOSS_RECORD_FILENAME).write_text(json.dumps(record) + "\n", encoding="utf-8")


def read_loss_record(checkpoint: Path) -> float | None:
    record = checkpoint / LOSS_RECORD_FILENAME
    if not record.is_file():
        return None  # a checkpoint written before the record existed
    return float(json.loads(record.read_text(encoding="utf-8"))["train_loss_sum"])


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
