"""Extractive question answering (SQuAD v1.1): fine-tune a pretrained mini_bert with a span-prediction head.

`scripts/finetune_qa.py` parses a recipe and calls `finetune_question_answering`:

    load SQuAD splits -> filter_squad_examples (repair or drop bad rows) -> windows over long contexts
    (lmrecipes.qa) -> AutoModelForQuestionAnswering on the pretrained folder -> TaskTrainer -> per-window logits ->
    postprocess_qa_predictions -> official exact match / F1 (the `squad` metric) -> all_results.json, model card

The evaluation runs inside the plain Trainer's `evaluate`, through `compute_metrics`, rather than in a
Trainer subclass (transformers' examples have a QuestionAnsweringTrainer for it): the evaluation windows carry the
start/end labels of the training windows too, so the Trainer gathers the logits for `compute_metrics` (which it
only does when there are labels) and reports an evaluation loss, and early stopping and `load_best_model_at_end`
can use exact_match or f1 like any other metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from transformers import (
    AutoModelForQuestionAnswering,
    BatchEncoding,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedTokenizerBase,
    TrainingArguments,
)

from lmrecipes import finetuning
from lmrecipes.finetuning import FinetuneArguments, FinetuneDataArguments
from lmrecipes.metrics import load_metric
from lmrecipes.qa import (
    SQUAD_COLUMNS,
    filter_squad_examples,
    postprocess_qa_predictions,
    prepare_eval_features,
    prepare_train_features,
    squad_metric_inputs,
)
from lmrecipes.training import TaskTrainer, start_run, train_evaluate_and_save

logger = logging.getLogger(__name__)

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
        default=20, metadata={"help": "Start and end logits paired per window when decoding an answer."}
    )
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer, in tokens."})
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every window to max_seq_length (else batches are padded to their longest)."},
    )

    def __post_init__(self) -> None:
        if not 0 <= self.doc_stride < self.max_seq_length:
            raise ValueError(
                f"doc_stride must be in [0, max_seq_length={self.max_seq_length}), got {self.doc_stride}"
            )
        for name in ("n_best_size", "max_answer_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


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


def build_compute_metrics(
    examples: Dataset, features: Dataset, args: QuestionAnsweringArguments
) -> Callable[[EvalPrediction], dict[str, float]]:
    """compute_metrics for the Trainer: official SQuAD exact_match and f1 (0-100) from the per-window logits.

    `examples` are the evaluation rows, `features` their windows in the order the Trainer evaluates them.
    """
    metric = load_metric("squad")
    # Read once into Python lists, not from Arrow at every evaluation.
    examples = examples.select_columns(["id", "context", "answers"]).to_dict()
    features = features.select_columns(list(POSTPROCESSING_COLUMNS)).to_dict()

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        start_logits, end_logits = prediction.predictions[:2]
        answers = postprocess_qa_predictions(
            examples,
            features,
            start_logits,
            end_logits,
            n_best_size=args.n_best_size,
            max_answer_length=args.max_answer_length,
        )
        return metric.compute(**squad_metric_inputs(answers, examples))

    return compute_metrics


def load_squad_split(
    data_args: FinetuneDataArguments,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    args: QuestionAnsweringArguments,
    max_samples: int | None,
    seed: int,
) -> Dataset:
    """A SQuAD split, sampled, with its unusable rows dropped (counted by reason in one log line)."""
    dataset = finetuning.load_split(data_args, split)
    missing = [column for column in SQUAD_COLUMNS if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"split {split!r} lacks the SQuAD column(s) {missing}; it has {dataset.column_names} "
            "(expected id, question, context, answers = {text: [...], answer_start: [...]})"
        )
    dataset = finetuning.take_samples(dataset, max_samples, seed)
    kept, counts = filter_squad_examples(dataset, tokenizer, args.max_seq_length, args.doc_stride)
    if len(kept) == 0:
        reasons = {reason: count for reason, count in counts.items() if count}
        raise ValueError(f"split {split!r}: no usable example left of {len(dataset)} ({reasons})")
    return kept


def finetune_question_answering(
    finetune_args: FinetuneArguments,
    data_args: FinetuneDataArguments,
    task_args: QuestionAnsweringArguments,
    training_args: TrainingArguments,
    recipe: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Run an extractive QA recipe end to end and return the final metrics (also in all_results.json)."""
    start_run(training_args, recipe)
    # Checked first, so a wrong early-stopping set-up fails before any work.
    callbacks = finetuning.early_stopping(finetune_args, training_args)

    tokenizer = finetuning.load_tokenizer(finetune_args)
    # Saved with the model: the extractive-question-answering pipeline then cuts windows as training did.
    tokenizer.model_max_length = task_args.max_seq_length
    model = finetuning.load_for_finetuning(AutoModelForQuestionAnswering, finetune_args)
    finetuning.check_max_seq_length(task_args.max_seq_length, model.config)

    seed = training_args.seed
    train_examples = load_squad_split(
        data_args, data_args.train_split, tokenizer, task_args, data_args.max_train_samples, seed
    )
    eval_examples = load_squad_split(
        data_args, data_args.eval_split, tokenizer, task_args, data_args.max_eval_samples, seed
    )
    window_args = {
        "tokenizer": tokenizer,
        "max_seq_length": task_args.max_seq_length,
        "doc_stride": task_args.doc_stride,
        "pad_to_max_length": task_args.pad_to_max_length,
    }
    map_args = {
        "batched": True,
        "num_proc": data_args.preprocessing_num_workers,
        "load_from_cache_file": not data_args.overwrite_cache,
    }
    with training_args.main_process_first(desc="cutting contexts into windows"):
        train_features = train_examples.map(
            prepare_train_features,
            fn_kwargs=window_args,
            remove_columns=train_examples.column_names,
            desc="Training windows",
            **map_args,
        )
        eval_features = eval_examples.map(
            prepare_validation_features,
            fn_kwargs=window_args,
            remove_columns=eval_examples.column_names,
            desc="Evaluation windows",
            **map_args,
        )
    logger.info(
        "train: %d questions -> %d windows; eval: %d questions -> %d windows",
        len(train_examples),
        len(train_features),
        len(eval_examples),
        len(eval_features),
    )

    logger.info("%s: %.2fM parameters", model.config.model_type, model.num_parameters() / 1e6)
    trainer = TaskTrainer(
        model=model,
        args=training_args,
        train_dataset=train_features,
        eval_dataset=eval_features.remove_columns(list(POSTPROCESSING_COLUMNS)),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=build_compute_metrics(eval_examples, eval_features, task_args),
        callbacks=callbacks,
    )
    return train_evaluate_and_save(trainer, tokenizer, recipe)
