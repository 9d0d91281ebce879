"""Pieces shared by the fine-tuning scripts (classification, extractive QA, translation).

A fine-tuning script parses `FinetuneArguments` (which model, early stopping), `FinetuneDataArguments` (which
dataset, sample limits), its task's arguments and `TrainingArguments` from a recipe; the rows go through
`lmrecipes.data` (load_split, take_samples, drop_bad_examples) like every task's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from transformers import (
    AutoConfig,
    AutoTokenizer,
    EarlyStoppingCallback,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import IntervalStrategy

from lmrecipes import data
from lmrecipes.errors import RecipeError
from lmrecipes.families import complete_auto_map
from lmrecipes.modeling import load_pretrained, max_positions

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
            raise RecipeError("model_name_or_path: name the pretrained output folder to fine-tune")


def load_for_finetuning(auto_class, args: FinetuneArguments, **model_kwargs: Any) -> PreTrainedModel:
    """The pretrained model with a new task head, or the same architecture freshly initialised."""
    if args.from_scratch:
        config = load_pretrained(AutoConfig, args.model_name_or_path, "model_name_or_path", **model_kwargs)
        model = auto_class.from_config(config)
    else:
        model = load_pretrained(auto_class, args.model_name_or_path, "model_name_or_path", **model_kwargs)
    complete_auto_map(model.config)
    return model


def load_tokenizer(args: FinetuneArguments, **kwargs: Any) -> PreTrainedTokenizerBase:
    return load_pretrained(AutoTokenizer, args.model_name_or_path, "model_name_or_path", **kwargs)


def early_stopping(args: EarlyStoppingArguments, training_args: TrainingArguments) -> list[TrainerCallback]:
    """transformers' EarlyStoppingCallback when the recipe asks for it, after checking the arguments it needs.

    The callback itself only asserts some of them once training starts, and silently does nothing when the metric
    is missing; here a wrong recipe fails before any work, naming the field.
    """
    if args.early_stopping_patience is None:
        return []
    if args.early_stopping_patience < 1:
        raise RecipeError(f"early_stopping_patience must be >= 1, got {args.early_stopping_patience}")
    if args.early_stopping_threshold < 0:
        raise RecipeError(f"early_stopping_threshold must be >= 0, got {args.early_stopping_threshold}")
    if training_args.eval_strategy == IntervalStrategy.NO:
        raise RecipeError("early_stopping_patience needs evaluations: set eval_strategy to steps or epoch")
    missing = [
        name
        for name, ok in (
            ("load_best_model_at_end: true", training_args.load_best_model_at_end),
            ("metric_for_best_model", training_args.metric_for_best_model),
        )
        if not ok
    ]
    if missing:
        raise RecipeError(f"early_stopping_patience needs {' and '.join(missing)} in the recipe")
    return [
        EarlyStoppingCallback(
            early_stopping_patience=args.early_stopping_patience,
            early_stopping_threshold=args.early_stopping_threshold,
        )
    ]


# Local file extension -> `datasets` builder for task data (rows with several columns, so no plain text files).
TASK_FILE_BUILDERS = {ext: builder for ext, builder in data.FILE_BUILDERS.items() if builder != "text"}


@dataclass
class FinetuneDataArguments(data.DatasetArguments):
    """Which labelled dataset to fine-tune and evaluate on (a Hub id, read through the data mirror, or local files)."""

    FILE_BUILDERS: ClassVar[Mapping[str, str]] = TASK_FILE_BUILDERS


def check_max_seq_length(max_seq_length: int, config: PretrainedConfig) -> None:
    """Raise before training if inputs of `max_seq_length` tokens would not fit the model's position table."""
    if max_seq_length < 2:
        raise RecipeError(f"max_seq_length must be >= 2, got {max_seq_length}")
    data.check_length_fits(
        "max_seq_length",
        max_seq_length,
        max_positions(config),
        hint="lower max_seq_length (long texts are then truncated or cut into windows).",
    )
