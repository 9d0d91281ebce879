"""The "extractive-question-answering" pipeline: any AutoModelForQuestionAnswering (MiniBertForQuestionAnswering),
with lmrecipes.question_answering's pre- and post-processing, so it answers exactly what the SQuAD evaluation scores.

    qa = pipeline("extractive-question-answering", model="path/to/finetuned-squad")
    qa(question="Where did the cat sit?", context="The cat sat on the mat.")
    # {'score': 0.93, 'start': 15, 'end': 22, 'answer': 'the mat'}
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from transformers.pipelines.base import ChunkPipeline

from lmrecipes.pipelines.common import save_model_and_tokenizers
from lmrecipes.question_answering import N_BEST_SIZE, prepare_eval_features, rank_answer_spans

QUESTION_ANSWERING_TASK = "extractive-question-answering"


def _question_answering_examples(
    args: tuple[Any, ...], question: str | list[str] | None, context: str | list[str] | None
) -> Any:
    """Bring the call forms of the old question-answering pipeline to one {"question", "context"} dict or a list.

    Accepted: qa(question=..., context=...) with strings, lists of equal length, or many questions on one context;
    qa("question", "context"); qa({"question": ..., "context": ...}); qa([{...}, {...}]); or a Dataset / generator
    of such dicts.
    """
    if args and (question is not None or context is not None):
        raise ValueError(
            "Give the question and context either as arguments or as question=/context=, not both."
        )
    if len(args) == 2:
        question, context = args
    elif len(args) == 1:
        return args[0]
    elif args:
        raise ValueError(f"Expected at most 2 positional arguments (question, context), got {len(args)}.")

    if question is None or context is None:
        raise ValueError("Question answering needs both a `question` and a `context`.")
    if isinstance(question, str) and isinstance(context, str):
        return {"question": question, "context": context}
    if isinstance(question, list) and isinstance(context, str):
        return [{"question": one_question, "context": context} for one_question in question]
    if isinstance(question, list) and isinstance(context, list):
        if len(question) != len(context):
            raise ValueError(f"Got {len(question)} questions but {len(context)} contexts: they go in pairs.")
        return [{"question": q, "context": c} for q, c in zip(question, context, strict=True)]
    raise TypeError(
        "`question` and `context` must be strings, lists of strings of the same length, or a list of questions "
        f"with one context; got {type(question).__name__} and {type(context).__name__}."
    )


def _check_example(example: Any) -> tuple[str, str]:
    if not isinstance(example, Mapping):
        raise TypeError(
            f'Each question answering input must be a dict {{"question": ..., "context": ...}}, got '
            f"{type(example).__name__}."
        )
    for field in ("question", "context"):
        if field not in example:
            raise ValueError(f"The input has no `{field}`; it has {sorted(example)}.")
        value = example[field]
        if not isinstance(value, str):
            raise ValueError(f"The input's `{field}` must be a string, got {type(value).__name__}.")
        if not value.strip():
            raise ValueError(f"The input's `{field}` is empty.")
    return example["question"], example["context"]


class ExtractiveQuestionAnsweringPipeline(ChunkPipeline):
    """Answer questions with a span of their context, like transformers 4's "question-answering" pipeline.

    A context too long for `max_seq_len` is cut into overlapping windows (`doc_stride` tokens shared between
    neighbours) with lmrecipes.question_answering.prepare_eval_features; each window is one model call (so `batch_size` batches
    windows). Over all windows of a question, lmrecipes.question_answering.rank_answer_spans ranks the spans by start + end logit
    with postprocess_qa_predictions' n-best rule, so the best answer is the one the SQuAD evaluation scores.

    Parameters (at construction or per call):
        top_k (1): number of answers; a dict for 1, a list of dicts (best first) otherwise.
        max_seq_len: tokens per window, question included; default min(384, tokenizer.model_max_length,
            model max_position_embeddings).
        doc_stride: tokens shared by consecutive windows; default min(max_seq_len // 2, 128).
        max_answer_len (30, as the evaluation): longest answer in tokens.

    Each answer is {"score", "start", "end", "answer"} with `context[start:end] == answer`. The score is the
    softmax of the answer's start + end logit over all the distinct candidate spans (the n-best pairs of every
    window, a span found in two overlapping windows counted once at its best), so scores fall as answers rank.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.tokenizer is None or not self.tokenizer.is_fast:
            raise TypeError(
                f"{type(self).__name__} needs a fast tokenizer (for its offset mappings); got "
                f"{type(self.tokenizer).__name__}."
            )

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        doc_stride: int | None = None,
        max_seq_len: int | None = None,
        max_answer_len: int | None = None,
    ) -> tuple[dict, dict, dict]:
        preprocess_params, postprocess_params = {}, {}
        if max_seq_len is not None:
            preprocess_params["max_seq_len"] = max_seq_len
        if doc_stride is not None:
            preprocess_params["doc_stride"] = doc_stride
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"top_k must be >= 1, got {top_k}.")
            postprocess_params["top_k"] = top_k
        if max_answer_len is not None:
            if max_answer_len < 1:
                raise ValueError(f"max_answer_len must be >= 1, got {max_answer_len}.")
            postprocess_params["max_answer_len"] = max_answer_len
        return preprocess_params, {}, postprocess_params

    def __call__(
        self,
        *args: Any,
        question: str | list[str] | None = None,
        context: str | list[str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any] | list[dict[str, Any]] | list[dict[str, Any] | list[dict[str, Any]]]:
        """Answer one question (a dict, or a list of dicts with top_k > 1) or a list of questions (a list)."""
        return super().__call__(_question_answering_examples(args, question, context), **kwargs)

    def _default_max_seq_len(self) -> int:
        limits = [384, self.tokenizer.model_max_length]
        if getattr(self.model.config, "max_position_embeddings", None):
            limits.append(self.model.config.max_position_embeddings)
        return min(limits)

    def preprocess(
        self, example: Mapping[str, str], max_seq_len: int | None = None, doc_stride: int | None = None
    ) -> Iterator[dict[str, Any]]:
        question, context = _check_example(example)
        max_seq_len = max_seq_len or self._default_max_seq_len()
        doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
        windows = prepare_eval_features(
            {"id": [0], "question": [question], "context": [context]},
            self.tokenizer,
            max_seq_length=max_seq_len,
            doc_stride=doc_stride,
            pad_to_max_length=False,  # windows are padded per batch, by the pipeline's collator
        )
        model_input_names = [name for name in self.tokenizer.model_input_names if name in windows]
        num_windows = len(windows["input_ids"])
        for window in range(num_windows):
            yield {
                **{name: torch.tensor([windows[name][window]]) for name in model_input_names},
                "offset_mapping": windows["offset_mapping"][window],
                "context": context,
                "is_last": window == num_windows - 1,
            }

    def _forward(self, window: dict[str, Any]) -> dict[str, Any]:
        carried = {key: window.pop(key) for key in ("offset_mapping", "context", "is_last")}
        outputs = self.model(**window)
        return {"start_logits": outputs.start_logits, "end_logits": outputs.end_logits, **carried}

    def postprocess(
        self, windows: list[dict[str, Any]], top_k: int = 1, max_answer_len: int = 30
    ) -> dict[str, Any] | list[dict[str, Any]]:
        context = windows[0]["context"]
        offset_mappings = [window["offset_mapping"] for window in windows]

        def logits(key: str) -> list[np.ndarray]:
            # Batched windows are padded (on the right: encoders with absolute positions need it) to the longest:
            # cut each back to its own tokens, so that padding takes no n-best slot and answers do not depend on
            # batch_size.
            return [
                window[key][0, : len(offsets)].float().numpy()
                for window, offsets in zip(windows, offset_mappings, strict=True)
            ]

        spans = rank_answer_spans(
            offset_mappings,
            logits("start_logits"),
            logits("end_logits"),
            n_best_size=max(N_BEST_SIZE, top_k),
            max_answer_length=max_answer_len,
        )
        best_of_each_span = {}  # character span -> its best candidate; dicts keep the best-first order
        for span in spans:
            best_of_each_span.setdefault((span.start_char, span.end_char), span)
        distinct = list(best_of_each_span.values())
        scores = torch.tensor([span.score for span in distinct], dtype=torch.float64).softmax(0).tolist()
        answers = [
            {
                "score": score,
                "start": span.start_char,
                "end": span.end_char,
                "answer": context[span.start_char : span.end_char],
            }
            for span, score in zip(distinct[:top_k], scores, strict=False)
        ] or [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]  # no valid span (as the evaluation's "")
        return answers[0] if top_k == 1 else answers

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save the model and tokenizer so that `pipeline(task, model=save_directory)` loads them back."""
        save_model_and_tokenizers(self, save_directory, {"": self.tokenizer}, **kwargs)
