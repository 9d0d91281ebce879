"""Sequence classification (SST-2, IMDB) for any family: class names, bad-row checks, tokenization into one input
or several windows per text, and metrics that combine a text's windows. The run: scripts/finetune_classification.py.

Long texts (`long_text_strategy`):
- "truncate": keep the first `max_seq_length` tokens of each text.
- "windows": cut each text into windows of `max_seq_length` tokens, consecutive windows sharing `window_stride`
  tokens (the tokenizer's own overflow mechanism). Every window is a training example with its text's label; at
  evaluation the windows of a text are combined (mean of their probabilities, or of their logits) into one
  prediction, so accuracy and F1 count texts, not windows.

The causal families (lstm_lm, mini_gpt) classify from the hidden state of the last real token, found from the
attention mask: batches are padded on the right, after that token, so padding never changes what it has seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset
from transformers import (
    AutoConfig,
    EvalPrediction,
    PreTrainedTokenizerBase,
)

from lmrecipes.errors import RecipeError
from lmrecipes.metrics import load_classification_metrics
from lmrecipes.modeling import load_pretrained
from lmrecipes.models.lstm_lm.configuration_lstm_lm import CLASSIFIER_POOLINGS as LSTM_LM_POOLINGS
from lmrecipes.models.mini_bert.configuration_mini_bert import CLASSIFIER_POOLINGS as MINI_BERT_POOLINGS

logger = logging.getLogger(__name__)

LONG_TEXT_STRATEGIES = ("truncate", "windows")
WINDOW_COMBINATIONS = ("mean_probabilities", "mean_logits")


@dataclass
class ClassificationArguments:
    """Which columns hold the text and the label, and how texts longer than the model's input are handled."""

    text_column: str = field(default="text", metadata={"help": "Column holding the text (SST-2: sentence)."})
    label_column: str = field(default="label", metadata={"help": "Column holding the class (id or name)."})
    max_seq_length: int = field(
        default=128, metadata={"help": "Tokens per model input, special tokens included."}
    )
    long_text_strategy: str = field(
        default="truncate",
        metadata={
            "help": "truncate: keep the first max_seq_length tokens; windows: cut long texts into overlapping "
            "windows and combine their predictions per text at evaluation.",
            "choices": list(LONG_TEXT_STRATEGIES),
        },
    )
    window_stride: int = field(
        default=32,
        metadata={
            "help": "windows: tokens shared by consecutive windows of a text (the tokenizer's `stride`)."
        },
    )
    window_combination: str = field(
        default="mean_probabilities",
        metadata={
            "help": "windows: how a text's window predictions are combined at evaluation.",
            "choices": list(WINDOW_COMBINATIONS),
        },
    )

    classifier_pooling: str | None = field(
        default=None,
        metadata={
            "help": "The vector the classifier reads: mini_bert cls (the first token's state, BERT's) or mean (the "
            "mean over the real tokens); lstm_lm last (the last real token's state) or mean. Unset keeps the "
            "model's config.",
            "choices": sorted(set(MINI_BERT_POOLINGS) | set(LSTM_LM_POOLINGS)),
        },
    )

    def __post_init__(self) -> None:
        if self.long_text_strategy not in LONG_TEXT_STRATEGIES:
            raise RecipeError(
                f"long_text_strategy must be one of {LONG_TEXT_STRATEGIES}, got {self.long_text_strategy!r}"
            )
        if self.window_combination not in WINDOW_COMBINATIONS:
            raise RecipeError(
                f"window_combination must be one of {WINDOW_COMBINATIONS}, got {self.window_combination!r}"
            )
        if self.max_seq_length < 2:
            raise RecipeError(f"max_seq_length must be >= 2, got {self.max_seq_length}")
        if self.long_text_strategy == "windows" and not 0 <= self.window_stride < self.max_seq_length:
            raise RecipeError(
                f"window_stride must be in [0, max_seq_length={self.max_seq_length}), got {self.window_stride}"
            )


# --------------------------------------------------------------------------------------------- labels


def class_names(dataset: Dataset, label_column: str) -> list[str]:
    """The class names, index = class id: a ClassLabel's names, else read off the (training) rows.

    Integer labels 0..n-1 are named "0".."n-1"; string labels are sorted. Missing labels (None, -1) are ignored.
    """
    if label_column not in dataset.column_names:
        raise RecipeError(
            f"the dataset has no column {label_column!r} (label_column); its columns are {dataset.column_names}"
        )
    feature = dataset.features[label_column]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    values = {_plain_label(value) for value in dataset[label_column]} - {None}
    if values and all(isinstance(value, int) for value in values):
        return [str(class_id) for class_id in range(max(values) + 1)]
    if values and all(isinstance(value, str) for value in values):
        return sorted(values)
    raise RecipeError(
        f"label column {label_column!r} holds {feature}: expected class ids (integers) or class names (strings)"
    )


def _plain_label(value: Any) -> int | str | float | None:
    """A label value as an int or str; None when it is missing.

    Missing: None, "", NaN (an empty CSV cell), or a negative id (SST-2's test split marks its hidden labels -1,
    as GLUE does). Whole floats (a CSV column with empty cells is read as floats) become ints.
    """
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        value = int(value) if float(value).is_integer() else float(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value) if value >= 0 else None
    return value if value != "" else None


def _class_id(value: Any, names: Sequence[str]) -> int | None:
    """The class id of a label value, None when it names no class."""
    value = _plain_label(value)
    if isinstance(value, str):
        return names.index(value) if value in names else None
    return value if isinstance(value, int) and value < len(names) else None


def bad_example_checks(
    text_column: str, label_column: str, names: Sequence[str]
) -> dict[str, Callable[[dict], bool]]:
    """data.drop_bad_examples checks for a classification row: each is True for a row to drop."""
    return {
        "empty text": lambda row: not isinstance(row[text_column], str) or not row[text_column].strip(),
        "missing label": lambda row: _plain_label(row[label_column]) is None,
        "unknown label": lambda row: _class_id(row[label_column], names) is None,
    }


# --------------------------------------------------------------------------------------------- tokenization


def tokenize_for_classification(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    args: ClassificationArguments,
    names: Sequence[str],
    *,
    num_proc: int | None = None,
    load_from_cache_file: bool = True,
) -> Dataset:
    """Model inputs, `labels` and `example_index` (the row each input comes from), one row per input.

    With "windows", a text longer than `max_seq_length` gives several rows, all with its label and index.
    """
    windows = args.long_text_strategy == "windows"
    if windows:
        room = args.max_seq_length - tokenizer.num_special_tokens_to_add(pair=False)
        if args.window_stride >= room:
            raise RecipeError(
                f"window_stride={args.window_stride} must be smaller than the {room} text tokens a window of "
                f"max_seq_length={args.max_seq_length} holds besides the special tokens"
            )

    def tokenize(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        encoded = tokenizer(
            batch[args.text_column],
            truncation=True,
            max_length=args.max_seq_length,
            stride=args.window_stride if windows else 0,
            return_overflowing_tokens=windows,
        )
        # For windows, the tokenizer says which text of the batch each window comes from.
        origin = encoded.pop("overflow_to_sample_mapping", None) or range(len(indices))
        encoded["labels"] = [_class_id(batch[args.label_column][row], names) for row in origin]
        encoded["example_index"] = [indices[row] for row in origin]
        return encoded

    return dataset.map(
        tokenize,
        batched=True,
        with_indices=True,
        remove_columns=dataset.column_names,
        num_proc=num_proc,
        load_from_cache_file=load_from_cache_file,
        desc="Cutting texts into windows" if windows else "Tokenizing",
    )


# --------------------------------------------------------------------------------------------- evaluation


def combine_windows(
    logits: np.ndarray,
    labels: np.ndarray,
    example_index: Sequence[int] | np.ndarray,
    combination: str = "mean_probabilities",
) -> tuple[np.ndarray, np.ndarray]:
    """One prediction per text from the predictions of its windows.

    logits: (windows, classes); labels and example_index: (windows,), the text each window comes from. Returns
    (scores, labels) with one row per text, in increasing example_index order: scores are the mean over the
    text's windows of the softmax probabilities ("mean_probabilities") or of the logits ("mean_logits").
    """
    if combination not in WINDOW_COMBINATIONS:
        raise RecipeError(f"combination must be one of {WINDOW_COMBINATIONS}, got {combination!r}")
    logits = np.asarray(logits, dtype=np.float64)
    example_index = np.asarray(example_index)
    if not len(logits) == len(labels) == len(example_index):
        raise ValueError(
            f"got {len(logits)} logit rows, {len(labels)} labels and {len(example_index)} example indices: "
            "there must be one of each per window"
        )
    if combination == "mean_probabilities":
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        scores = shifted / shifted.sum(axis=-1, keepdims=True)
    else:
        scores = logits
    examples, first_window, text_of_window, windows_per_text = np.unique(
        example_index, return_index=True, return_inverse=True, return_counts=True
    )
    sums = np.zeros((len(examples), scores.shape[-1]))
    np.add.at(sums, text_of_window, scores)
    return sums / windows_per_text[:, None], np.asarray(labels)[first_window]


def build_compute_metrics(
    num_labels: int, example_index: Sequence[int] | None = None, combination: str = "mean_probabilities"
) -> Callable[[EvalPrediction], dict[str, float]]:
    """compute_metrics for the Trainer: accuracy and F1 (binary for two classes, else macro-averaged).

    With `example_index` (the eval dataset's column, for windows) the windows of each text are combined first.
    """
    metric = load_classification_metrics("binary" if num_labels == 2 else "macro")

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        labels = prediction.label_ids
        if example_index is not None:
            logits, labels = combine_windows(logits, labels, example_index, combination)
        return metric.compute(predictions=logits.argmax(-1), references=labels)

    return compute_metrics


# --------------------------------------------------------------------------------------------- the recipe


def pooling_override(classifier_pooling: str | None, model_name_or_path: str) -> dict[str, str]:
    """The config override that sets `classifier_pooling` when the recipe gives it, after checking that the model's
    family has the option (a config takes unknown keyword arguments silently) and takes the value."""
    if classifier_pooling is None:
        return {}
    config = load_pretrained(AutoConfig, model_name_or_path, "model_name_or_path")
    if "classifier_pooling" not in getattr(type(config), "__dataclass_fields__", {}):
        raise RecipeError(
            f"classifier_pooling: {config.model_type} models have no such option (mini_bert and lstm_lm have); "
            "remove it"
        )
    try:  # the family's own check of the value (a config built from a dict runs it; setting the field does not)
        type(config).from_dict(config.to_dict() | {"classifier_pooling": classifier_pooling})
    except ValueError as error:
        raise RecipeError(f"classifier_pooling: {error}") from error
    return {"classifier_pooling": classifier_pooling}


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, max_seq_length: int) -> PreTrainedTokenizerBase:
    """Padding on the right with a real pad token, and the fine-tuned input length as the tokenizer's limit."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise RecipeError("the tokenizer has neither a pad nor an eos token to pad batches with")
        # The classification heads find padding from the attention mask, so eos can double as pad.
        tokenizer.pad_token = tokenizer.eos_token
    # Right padding keeps a causal model's last real token (which the heads pool) ahead of the padding, so the
    # LSTM and causal attention read it before any pad token.
    tokenizer.padding_side = "right"
    # Saved with the model: pipeline(..., truncation=True) then truncates where fine-tuning did.
    tokenizer.model_max_length = max_seq_length
    return tokenizer
