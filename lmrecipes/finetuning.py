"""Pieces shared by the fine-tuning scripts (classification, extractive QA, translation).

A fine-tuning script parses `FinetuneArguments` (which model, early stopping), `FinetuneDataArguments` (which
dataset, sample limits), its task's arguments and `TrainingArguments` from a recipe, then:

    raw = load_split(data_args, data_args.train_split)                # Hub (through the mirror) or local file
    raw = take_samples(raw, data_args.max_train_samples, seed)        # random rows: some datasets are sorted
    raw = drop_bad_examples(raw, {"empty text": ...}, "train split")  # one summary line; error if none left
    model = load_for_finetuning(AutoModelForXxx, finetune_args, num_labels=...)
    trainer = RecipeTrainer(..., report_perplexity=False, callbacks=early_stopping(finetune_args, training_args))
    metrics = train_evaluate_and_save(trainer, tokenizer, recipe)     # all_results.json + model card
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, load_dataset
from transformers import (
    AutoTokenizer,
    EarlyStoppingCallback,
    PretrainedConfig,
    PreTrainedModel,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import IntervalStrategy

from lmrecipes import data
from lmrecipes.families import complete_auto_map
from lmrecipes.modeling import max_positions

logger = logging.getLogger(__name__)


@dataclass
class EarlyStoppingArguments:
    """When to stop: transformers' EarlyStoppingCallback, for every fine-tuning recipe."""

    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without improvement of metric_for_best_model (accuracy, "
            "f1, bleu, ...; needs load_best_model_at_end, so the best checkpoint is the one saved)."
        },
    )
    early_stopping_threshold: float = field(
        default=0.0,
        metadata={"help": "How much metric_for_best_model must improve to count as an improvement."},
    )


@dataclass
class FinetuneArguments(EarlyStoppingArguments):
    """Where the model comes from, and when to stop."""

    model_name_or_path: str = field(
        default=None,
        metadata={"help": "Pretrained output folder (or Hub id) to fine-tune: model and tokenizer."},
    )
    from_scratch: bool = field(
        default=False,
        metadata={
            "help": "Same architecture and tokenizer as model_name_or_path, random weights: the baseline that "
            "shows what pretraining buys."
        },
    )

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise ValueError("model_name_or_path: name the pretrained output folder to fine-tune")


def load_for_finetuning(auto_class, args: FinetuneArguments, **model_kwargs: Any) -> PreTrainedModel:
    """The pretrained model with a new task head, or the same architecture freshly initialised."""
    if args.from_scratch:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(args.model_name_or_path, **model_kwargs)
        model = auto_class.from_config(config)
    else:
        model = auto_class.from_pretrained(args.model_name_or_path, **model_kwargs)
    complete_auto_map(model.config)
    return model


def load_tokenizer(args: FinetuneArguments, **kwargs: Any):
    return AutoTokenizer.from_pretrained(args.model_name_or_path, **kwargs)


def early_stopping(args: EarlyStoppingArguments, training_args: TrainingArguments) -> list[TrainerCallback]:
    """transformers' EarlyStoppingCallback when the recipe asks for it, after checking the arguments it needs.

    The callback itself only asserts some of them once training starts, and silently does nothing when the metric
    is missing; here a wrong recipe fails before any work, naming the field.
    """
    if args.early_stopping_patience is None:
        return []
    if args.early_stopping_patience < 1:
        raise ValueError(f"early_stopping_patience must be >= 1, got {args.early_stopping_patience}")
    if args.early_stopping_threshold < 0:
        raise ValueError(f"early_stopping_threshold must be >= 0, got {args.early_stopping_threshold}")
    if training_args.eval_strategy == IntervalStrategy.NO:
        raise ValueError("early_stopping_patience needs evaluations: set eval_strategy to steps or epoch")
    missing = [
        name
        for name, ok in (
            ("load_best_model_at_end: true", training_args.load_best_model_at_end),
            ("metric_for_best_model", training_args.metric_for_best_model),
        )
        if not ok
    ]
    if missing:
        raise ValueError(f"early_stopping_patience needs {' and '.join(missing)} in the recipe")
    return [
        EarlyStoppingCallback(
            early_stopping_patience=args.early_stopping_patience,
            early_stopping_threshold=args.early_stopping_threshold,
        )
    ]


def drop_bad_examples(
    dataset: Dataset, checks: Mapping[str, Callable[[dict[str, Any]], bool]], description: str
) -> Dataset:
    """Drop the rows that fail any check, log one summary line counting them by reason, fail if none are left.

    `checks` maps a reason ("empty text", "missing label", ...) to a predicate that is True for a BAD row; the first
    reason that applies is the one counted. Run this before training so nothing crashes mid-epoch.
    """
    reasons: Counter[str] = Counter()

    def keep(row: dict[str, Any]) -> bool:
        for reason, is_bad in checks.items():
            if is_bad(row):
                reasons[reason] += 1
                return False
        return True

    # Counted in a plain loop rather than Dataset.filter: filter may run in worker processes (num_proc) or be
    # served from the cache, and the counts would then be lost.
    kept = [i for i, row in enumerate(dataset) if keep(row)]
    skipped = sum(reasons.values())
    if skipped:
        summary = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        logger.warning("%s: skipped %d of %d examples (%s)", description, skipped, len(dataset), summary)
    else:
        logger.info("%s: all %d examples usable", description, len(dataset))
    if not kept:
        raise ValueError(f"{description}: no usable example left after skipping {skipped} ({dict(reasons)})")
    return dataset.select(kept) if skipped else dataset


# Local file extension -> `datasets` builder for task data (rows with several columns, so no plain text files).
TASK_FILE_BUILDERS = {ext: builder for ext, builder in data.FILE_BUILDERS.items() if builder != "text"}


@dataclass
class FinetuneDataArguments:
    """Which labelled dataset to fine-tune and evaluate on (a Hub id, read through the data mirror, or local files)."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset id, e.g. stanfordnlp/sst2. Read from $LMRECIPES_DATA_MIRROR/<id> when that folder "
            "exists (offline mirror), else from the Hub."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Dataset configuration (needed when there are several)."}
    )
    train_file: str | None = field(
        default=None,
        metadata={"help": "Local training file (.json/.jsonl, .csv or .parquet) instead of dataset_name."},
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Local evaluation file, same format as train_file."}
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str = field(
        default="validation",
        metadata={"help": "Split to evaluate on (it must have labels: SST-2's test labels are all -1)."},
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Keep N randomly chosen training rows (seeded by `seed`; unusable ones among them are then "
            "dropped): quick runs."
        },
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep N randomly chosen evaluation rows (seeded by `seed`)."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenizing the dataset."}
    )
    overwrite_cache: bool = field(
        default=False, metadata={"help": "Re-tokenize instead of reusing the cached result."}
    )

    def __post_init__(self) -> None:
        data.check_data_source(self, TASK_FILE_BUILDERS)
        for name in ("max_train_samples", "max_eval_samples", "preprocessing_num_workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 when given, got {value}.")


def load_split(args: FinetuneDataArguments, split: str) -> Dataset:
    """One split of the recipe's dataset: the Hub dataset (through the mirror) or the matching local file."""
    if args.dataset_name is not None:
        return data.load_hub_dataset(args.dataset_name, args.dataset_config_name, split)
    data_files = {args.train_split: args.train_file, args.eval_split: args.validation_file}
    path = data_files.get(split)
    if path is None:
        flag = {args.train_split: "train_file", args.eval_split: "validation_file"}.get(split)
        raise ValueError(f"No local file for split {split!r}" + (f": set {flag}." if flag else "."))
    builder = TASK_FILE_BUILDERS[os.path.splitext(path)[1].lower()]
    return load_dataset(builder, data_files={split: path}, split=split)


def take_samples(dataset: Dataset, max_samples: int | None, seed: int) -> Dataset:
    """`max_samples` rows chosen at random (seeded), or all of them.

    At random, not the first ones: some datasets are sorted by label (IMDB: all negative reviews, then all
    positive), so the first rows would hold a single class.
    """
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_samples))


def check_max_seq_length(max_seq_length: int, config: PretrainedConfig) -> None:
    """Raise before training if inputs of `max_seq_length` tokens would not fit the model's position table."""
    if max_seq_length < 2:
        raise ValueError(f"max_seq_length must be >= 2, got {max_seq_length}")
    data.check_length_fits(
        "max_seq_length",
        max_seq_length,
        max_positions(config),
        hint="lower max_seq_length (long texts are then truncated or cut into windows).",
    )
