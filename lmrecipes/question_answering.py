"""Extractive question answering (SQuAD v1.1) with an encoder: pre- and post-processing, and the official score.

As transformers' run_qa.py / utils_qa.py: contexts cut into overlapping windows, answer positions as labels, the best
span over an example's windows mapped back to its text; the run is scripts/finetune_qa.py. docs/question_answering.md
explains the windows, the labels and why evaluation runs in the plain Trainer.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import datasets
import numpy as np
from datasets import Dataset
from transformers import BatchEncoding, EvalPrediction, PreTrainedTokenizerBase

from lmrecipes import data
from lmrecipes.errors import RecipeError
from lmrecipes.finetuning import FinetuneDataArguments
from lmrecipes.metrics import load_metric

logger = logging.getLogger(__name__)

SQUAD_COLUMNS = ("id", "question", "context", "answers")
# Start and end logits paired per window when decoding an answer: the evaluation's and the pipeline's default.
N_BEST_SIZE = 20

# Reasons filter_squad_examples counts. "relocated" rows are repaired and kept; the others are dropped.
RELOCATED = "relocated"
DROP_REASONS = (
    "empty_question",
    "empty_context",
    "no_answer",
    "empty_answer",
    "answer_not_in_context",
    "question_too_long",
)


def _check_columns(column_names: Sequence[str], needed: Sequence[str], what: str) -> None:
    missing = [name for name in needed if name not in column_names]
    if missing:
        raise RecipeError(f"{what} is missing the column(s) {missing}; it has {list(column_names)}.")


def _max_question_tokens(tokenizer: PreTrainedTokenizerBase, max_seq_length: int, doc_stride: int) -> int:
    """Longest question that leaves a context window of more than `doc_stride` tokens in `max_seq_length`."""
    return max_seq_length - tokenizer.num_special_tokens_to_add(pair=True) - doc_stride - 1


def _question_token_counts(questions: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    return [len(ids) for ids in tokenizer(list(questions), add_special_tokens=False)["input_ids"]]


def _tokenize_into_windows(
    examples: Mapping[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    doc_stride: int,
    pad_to_max_length: bool,
) -> BatchEncoding:
    """Tokenize (question, context) pairs, splitting long contexts into overlapping windows."""
    if not tokenizer.is_fast:
        raise TypeError(
            f"{type(tokenizer).__name__} is a slow tokenizer: question answering needs a fast tokenizer "
            "(PreTrainedTokenizerFast) for its offset mappings."
        )
    if doc_stride < 0 or max_seq_length <= doc_stride:
        raise RecipeError(
            f"Need 0 <= doc_stride < max_seq_length, got doc_stride={doc_stride}, max_seq_length={max_seq_length}."
        )
    # Leading whitespace of some SQuAD questions would only waste window room (as in run_qa.py).
    questions = [question.lstrip() for question in examples["question"]]

    # The tokenizer panics (a Rust PanicException, not a Python error) when a question leaves no more than
    # `doc_stride` tokens of room for the context; check first so the error names the example.
    longest = _max_question_tokens(tokenizer, max_seq_length, doc_stride)
    for row, length in enumerate(_question_token_counts(questions, tokenizer)):
        if length > longest:
            example_id = examples["id"][row] if "id" in examples else row
            raise RecipeError(
                f"The question of example {example_id!r} is {length} tokens long, more than the {longest} that "
                f"max_seq_length={max_seq_length} and doc_stride={doc_stride} leave beside the special tokens and "
                "a context window. Raise max_seq_length, lower doc_stride, or drop such rows first with "
                "filter_squad_examples(dataset, tokenizer, max_seq_length, doc_stride)."
            )

    return tokenizer(
        questions,
        examples["context"],
        truncation="only_second",  # only the context is cut into windows, never the question
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if pad_to_max_length else False,
    )


def _cls_index(input_ids: list[int], tokenizer: PreTrainedTokenizerBase) -> int:
    """Position of [CLS], the "no answer in this window" label (0 with the BERT template)."""
    if tokenizer.cls_token_id is not None and tokenizer.cls_token_id in input_ids:
        return input_ids.index(tokenizer.cls_token_id)
    return 0


def prepare_train_features(
    examples: Mapping[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    doc_stride: int,
    pad_to_max_length: bool = True,
) -> BatchEncoding:
    """Tokenize a batch of SQuAD rows into training windows with `start_positions` / `end_positions`.

    The label of a window is the token span of the first answer (SQuAD v1.1 train rows have exactly one) when the
    whole answer lies inside the window's context, else [CLS] for both positions. The result has one row per
    window: input_ids, token_type_ids, attention_mask, start_positions, end_positions.
    """
    windows = _tokenize_into_windows(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length)
    window_to_example = windows.pop("overflow_to_sample_mapping")
    offset_mappings = windows.pop("offset_mapping")

    windows["start_positions"] = []
    windows["end_positions"] = []
    for window_index, offsets in enumerate(offset_mappings):
        cls_index = _cls_index(windows["input_ids"][window_index], tokenizer)
        answers = examples["answers"][window_to_example[window_index]]
        if not answers["text"]:
            windows["start_positions"].append(cls_index)
            windows["end_positions"].append(cls_index)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])

        # Token range of the context in this window (sequence id 1 = second text of the pair).
        sequence_ids = windows.sequence_ids(window_index)
        context_tokens = [i for i, sequence_id in enumerate(sequence_ids) if sequence_id == 1]
        if not context_tokens:
            example_index = window_to_example[window_index]
            example_id = examples["id"][example_index] if "id" in examples else example_index
            raise RecipeError(
                f"Example {example_id!r} has an empty context; drop such rows first with filter_squad_examples."
            )
        context_start, context_end = context_tokens[0], context_tokens[-1]
        if not (offsets[context_start][0] <= start_char and offsets[context_end][1] >= end_char):
            windows["start_positions"].append(cls_index)
            windows["end_positions"].append(cls_index)
            continue
        # The answer's first token is the last one starting at or before start_char; its last token is the
        # first one ending at or after end_char.
        windows["start_positions"].append(max(i for i in context_tokens if offsets[i][0] <= start_char))
        windows["end_positions"].append(min(i for i in context_tokens if offsets[i][1] >= end_char))
    return windows


def prepare_eval_features(
    examples: Mapping[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    doc_stride: int,
    pad_to_max_length: bool = True,
) -> BatchEncoding:
    """Tokenize a batch of SQuAD rows into evaluation windows for `postprocess_qa_predictions`.

    Each window keeps `example_id` (the id of its row) and `offset_mapping`, with None for every token outside
    the context (question, special tokens, padding) so that no answer can be predicted there.
    """
    _check_columns(list(examples.keys()), ("id",), "The SQuAD batch")
    windows = _tokenize_into_windows(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length)
    window_to_example = windows.pop("overflow_to_sample_mapping")

    windows["example_id"] = []
    for window_index in range(len(windows["input_ids"])):
        sequence_ids = windows.sequence_ids(window_index)
        windows["example_id"].append(examples["id"][window_to_example[window_index]])
        windows["offset_mapping"][window_index] = [
            offset if sequence_ids[token] == 1 else None
            for token, offset in enumerate(windows["offset_mapping"][window_index])
        ]
    return windows


class AnswerSpan(NamedTuple):
    """A candidate answer: its characters in the context, its score (start + end logit) and where it was found."""

    start_char: int
    end_char: int
    score: float
    window: int  # index into the windows given to rank_answer_spans
    start_token: int
    end_token: int


def rank_answer_spans(
    offset_mappings: Sequence[Sequence[tuple[int, int] | None]],
    start_logits: Sequence[Sequence[float]] | np.ndarray,
    end_logits: Sequence[Sequence[float]] | np.ndarray,
    n_best_size: int = N_BEST_SIZE,
    max_answer_length: int = 30,
) -> list[AnswerSpan]:
    """The candidate answer spans of one example over its windows, best (highest start + end logit) first.

    `offset_mappings[i]`, `start_logits[i]` and `end_logits[i]` belong to window i of the example (offsets from
    `prepare_eval_features`: None outside the context). In every window the `n_best_size` highest start and end
    logits are paired; a pair is a candidate when both tokens are in the context, end >= start and it is at most
    `max_answer_length` tokens long. Candidates of equal score keep the window / n-best order (the sort is stable),
    so the first one is exactly the answer `postprocess_qa_predictions` picks.
    """
    candidates = []
    for window, offsets in enumerate(offset_mappings):
        # Logits are longer than the window where its batch was padded (and the Trainer pads them across
        # batches): only the window's own tokens take n-best places, so the ranking does not depend on the batch.
        window_start_logits = np.asarray(start_logits[window])[: len(offsets)]
        window_end_logits = np.asarray(end_logits[window])[: len(offsets)]
        top_starts = np.argsort(window_start_logits)[::-1][:n_best_size]
        top_ends = np.argsort(window_end_logits)[::-1][:n_best_size]
        for start in top_starts:
            for end in top_ends:
                if offsets[start] is None or offsets[end] is None:  # only context tokens have offsets
                    continue
                if end < start or end - start + 1 > max_answer_length:
                    continue
                score = float(window_start_logits[start] + window_end_logits[end])
                candidates.append(
                    AnswerSpan(offsets[start][0], offsets[end][1], score, window, int(start), int(end))
                )
    return sorted(candidates, key=lambda span: span.score, reverse=True)


def postprocess_qa_predictions(
    examples: datasets.Dataset | Mapping[str, Sequence[Any]],
    features: datasets.Dataset | Mapping[str, Sequence[Any]],
    start_logits: Sequence[Sequence[float]] | np.ndarray,
    end_logits: Sequence[Sequence[float]] | np.ndarray,
    n_best_size: int = N_BEST_SIZE,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """Turn per-window start/end logits into one answer text per example: {example id: answer text}.

    `examples` are the SQuAD rows (columns id, context), `features` their windows from `prepare_eval_features`
    (columns example_id, offset_mapping), and `start_logits[i]` / `end_logits[i]` the model's logits for window
    i. For every window of an example, the `n_best_size` highest start and end logits are paired; a pair is a
    candidate span when both tokens are in the context, end >= start and it is at most `max_answer_length`
    tokens long. The answer is the context text of the candidate with the highest start + end logit over all
    the example's windows ("" if no window has a valid span).
    """
    feature_example_ids = list(features["example_id"])
    offset_mappings = list(features["offset_mapping"])
    if len(start_logits) != len(feature_example_ids) or len(end_logits) != len(feature_example_ids):
        raise ValueError(
            f"Got {len(start_logits)} start and {len(end_logits)} end logit rows for {len(feature_example_ids)} "
            "features: there must be one row of each per feature (window)."
        )
    windows_by_example = collections.defaultdict(list)
    for feature_index, example_id in enumerate(feature_example_ids):
        windows_by_example[example_id].append(feature_index)
    example_ids = list(examples["id"])
    unknown = set(windows_by_example) - set(example_ids)
    if unknown:
        raise ValueError(
            f"Features refer to example ids that are not in `examples`, e.g. {sorted(unknown)[:3]}."
        )

    predictions = {}
    for example_id, context in zip(example_ids, examples["context"], strict=True):
        windows = windows_by_example[example_id]
        spans = rank_answer_spans(
            [offset_mappings[i] for i in windows],
            [start_logits[i] for i in windows],
            [end_logits[i] for i in windows],
            n_best_size=n_best_size,
            max_answer_length=max_answer_length,
        )
        predictions[example_id] = context[spans[0].start_char : spans[0].end_char] if spans else ""
    return predictions


def squad_metric_inputs(
    predictions: Mapping[str, str], examples: datasets.Dataset | Mapping[str, Sequence[Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Arguments for the `squad` metric: `load_metric("squad").compute(**squad_metric_inputs(predictions, examples))`."""
    return {
        "predictions": [
            {"id": example_id, "prediction_text": text} for example_id, text in predictions.items()
        ],
        "references": [
            {"id": example_id, "answers": answers}
            for example_id, answers in zip(examples["id"], examples["answers"], strict=True)
        ],
    }


def _locate_answers(
    question: str, context: str, answers: dict[str, list]
) -> tuple[dict[str, list], str | None]:
    """Check one SQuAD row; return its (possibly repaired) answers and a reason from DROP_REASONS / RELOCATED."""
    if not question.strip():
        return answers, "empty_question"
    if not context.strip():
        return answers, "empty_context"
    if not answers["text"]:
        return answers, "no_answer"
    starts = []
    relocated = False
    for text, start in zip(answers["text"], answers["answer_start"], strict=True):
        if not text.strip():
            return answers, "empty_answer"
        if context[start : start + len(text)] == text:
            starts.append(start)
            continue
        occurrences = []
        position = context.find(text)
        while position != -1:
            occurrences.append(position)
            position = context.find(text, position + 1)
        if not occurrences:
            return answers, "answer_not_in_context"
        # answer_start points at the wrong place: take the occurrence of the text nearest to it.
        starts.append(min(occurrences, key=lambda occurrence: abs(occurrence - start)))
        relocated = True
    return {"text": list(answers["text"]), "answer_start": starts}, RELOCATED if relocated else None


def filter_squad_examples(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_seq_length: int | None = None,
    doc_stride: int = 0,
    description: str = "SQuAD rows",
) -> tuple[datasets.Dataset, dict[str, int]]:
    """Check every SQuAD row before tokenization: repair what can be repaired, drop and count the rest.

    A row whose `answer_start` does not point at its answer text in the context, but whose text does occur in
    the context, is repaired: answer_start moves to the occurrence nearest to the old value (counted as
    "relocated", kept). Rows with an empty question or context, no answer, an empty answer text, or an answer
    text that is not in the context are dropped, counted by reason. Given `tokenizer` and `max_seq_length`, rows
    whose question is too long to leave room for a context window (see prepare_train_features) are dropped too,
    as "question_too_long". The drops go through `data.drop_flagged_rows` (one log line; an error if nothing is
    left). Returns (kept rows, counts): the counts have "relocated" and every reason of DROP_REASONS, zeros
    included.

    Note: a row whose answer_start points at *another* occurrence of the same text (about 2% of the mirror's
    rebuilt train split) cannot be detected here: the text there is the answer, so it is kept as it is.
    """
    _check_columns(dataset.column_names, SQUAD_COLUMNS, "The SQuAD dataset")
    if tokenizer is not None and max_seq_length is None:
        raise RecipeError("filter_squad_examples: give max_seq_length (and doc_stride) with the tokenizer.")
    longest_question = (
        None if tokenizer is None else _max_question_tokens(tokenizer, max_seq_length, doc_stride)
    )

    def check_batch(batch: Mapping[str, list]) -> dict[str, list]:
        checked = [
            _locate_answers(question, context, answers)
            for question, context, answers in zip(
                batch["question"], batch["context"], batch["answers"], strict=True
            )
        ]
        reasons = [reason or "" for _, reason in checked]
        if longest_question is not None:
            question_lengths = _question_token_counts(
                [question.lstrip() for question in batch["question"]], tokenizer
            )
            reasons = [
                "question_too_long" if reason not in DROP_REASONS and length > longest_question else reason
                for reason, length in zip(reasons, question_lengths, strict=True)
            ]
        return {"answers": [answers for answers, _ in checked], "_squad_check": reasons}

    features = datasets.Features({**dataset.features, "_squad_check": datasets.Value("string")})
    checked = dataset.map(check_batch, batched=True, features=features, desc="Checking SQuAD rows")
    reasons = collections.Counter(checked["_squad_check"])
    counts = {RELOCATED: reasons[RELOCATED], **{reason: reasons[reason] for reason in DROP_REASONS}}

    if counts[RELOCATED]:
        logger.warning("%s: moved answer_start to the answer text in %d rows", description, counts[RELOCATED])
    drop_reasons = [reason if reason in DROP_REASONS else None for reason in checked["_squad_check"]]
    kept = data.drop_flagged_rows(checked, drop_reasons, description, row_ids=checked["id"])
    return kept.remove_columns("_squad_check"), counts


# Columns of the evaluation windows that postprocessing needs and the model does not take.
POSTPROCESSING_COLUMNS = ("example_id", "offset_mapping")


@dataclass
class QuestionAnsweringArguments:
    """How contexts are cut into windows and how answers are decoded."""

    max_seq_length: int = field(
        default=384, metadata={"help": "Tokens per window: [CLS] question [SEP] context part [SEP]."}
    )
    doc_stride: int = field(
        default=128, metadata={"help": "Context tokens shared by consecutive windows of a long context."}
    )
    n_best_size: int = field(
        default=N_BEST_SIZE,
        metadata={"help": "Start and end logits paired per window when decoding an answer."},
    )
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer, in tokens."})
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every window to max_seq_length (else batches are padded to their longest)."},
    )

    def __post_init__(self) -> None:
        if not 0 <= self.doc_stride < self.max_seq_length:
            raise RecipeError(
                f"doc_stride must be in [0, max_seq_length={self.max_seq_length}), got {self.doc_stride}"
            )
        for name in ("n_best_size", "max_answer_length"):
            if getattr(self, name) < 1:
                raise RecipeError(f"{name} must be >= 1, got {getattr(self, name)}")


def prepare_validation_features(
    examples: Mapping[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    doc_stride: int,
    pad_to_max_length: bool = False,
) -> BatchEncoding:
    """Evaluation windows (prepare_eval_features: example_id, offset_mapping) that also carry their labels.

    The labels are those prepare_train_features gives the same windows (the first reference answer, [CLS] where
    the window does not hold it); they only serve the evaluation loss, the score compares against all answers.
    """
    windows = prepare_eval_features(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length)
    labelled = prepare_train_features(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length)
    if labelled["input_ids"] != windows["input_ids"]:  # same tokenizer call on the same rows: cannot differ
        raise RuntimeError("training and evaluation windows of the same rows differ")
    windows["start_positions"] = labelled["start_positions"]
    windows["end_positions"] = labelled["end_positions"]
    return windows


PREDICTIONS_FILENAME = "predictions.json"


class SquadScorer:
    """compute_metrics for the Trainer: official SQuAD exact_match and f1 (0-100) from the per-window logits.

    `examples` are the evaluation rows, `features` their windows in the order the Trainer evaluates them. The
    answers of the last call stay in `predictions` (question id -> answer text), for `write_predictions`.
    """

    def __init__(self, examples: Dataset, features: Dataset, args: QuestionAnsweringArguments) -> None:
        self.metric = load_metric("squad")
        # Read once into Python lists, not from Arrow at every evaluation.
        self.examples = examples.select_columns(["id", "context", "answers"]).to_dict()
        self.features = features.select_columns(list(POSTPROCESSING_COLUMNS)).to_dict()
        self.args = args
        self.predictions: dict[str, str] = {}

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        start_logits, end_logits = prediction.predictions[:2]
        self.predictions = postprocess_qa_predictions(
            self.examples,
            self.features,
            start_logits,
            end_logits,
            n_best_size=self.args.n_best_size,
            max_answer_length=self.args.max_answer_length,
        )
        return self.metric.compute(**squad_metric_inputs(self.predictions, self.examples))


def write_predictions(path: Path, predictions: Mapping[str, str]) -> None:
    """The official SQuAD v1.1 prediction file: one JSON object, question id -> answer text, which the official
    evaluate-v1.1.py script scores against the dev set."""
    path.write_text(json.dumps(dict(predictions), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def load_squad_split(
    data_args: FinetuneDataArguments,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    args: QuestionAnsweringArguments,
    max_samples: int | None,
    seed: int,
) -> Dataset:
    """A SQuAD split, sampled, with its unusable rows dropped (counted by reason in one log line)."""
    dataset = data_args.load_split(split)
    missing = [column for column in SQUAD_COLUMNS if column not in dataset.column_names]
    if missing:
        raise RecipeError(
            f"split {split!r} lacks the SQuAD column(s) {missing}; it has {dataset.column_names} "
            "(expected id, question, context, answers = {text: [...], answer_start: [...]})"
        )
    dataset = data.take_samples(dataset, max_samples, seed)
    description = f"{'train' if split == data_args.train_split else 'eval'} split {split!r}"
    kept, _ = filter_squad_examples(dataset, tokenizer, args.max_seq_length, args.doc_stride, description)
    return kept
