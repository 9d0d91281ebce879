"""transformers pipelines for extractive question answering and encoder-decoder translation.

transformers 5 removed its "question-answering", "translation" and "text2text-generation" pipelines (see
`REMOVED_TASKS` in transformers/pipelines/__init__.py) and refuses those task names. The ecosystem's way to add a task
back is a custom pipeline registered with `PIPELINE_REGISTRY`; `register_pipelines()` (run when lmrecipes is
imported) registers two, under names the removed-task check lets through:

- "extractive-question-answering": `ExtractiveQuestionAnsweringPipeline`, any `AutoModelForQuestionAnswering`
  (MiniBertForQuestionAnswering). Pre- and post-processing are lmrecipes.qa's, so the pipeline answers exactly
  what the SQuAD evaluation scores.
- "seq2seq-translation": `Seq2SeqTranslationPipeline`, any `AutoModelForSeq2SeqLM`, e.g. an EncoderDecoderModel
  with a mini_bert encoder and a mini_gpt decoder (add_cross_attention=True), whose source and target tokenizers
  may differ.

    import lmrecipes
    from transformers import pipeline

    qa = pipeline("extractive-question-answering", model="path/to/finetuned-squad")
    qa(question="Where did the cat sit?", context="The cat sat on the mat.")
    # {'score': 0.93, 'start': 15, 'end': 22, 'answer': 'the mat'}

    translate = pipeline("seq2seq-translation", model=model, tokenizer=source_tok, decoder_tokenizer=target_tok)
    translate("the cat sat on the mat.", num_beams=4, max_new_tokens=32)
    # [{'translation_text': '...'}]
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline, Pipeline
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils import ModelOutput

from lmrecipes.qa import prepare_eval_features, rank_answer_spans

QUESTION_ANSWERING_TASK = "extractive-question-answering"
TRANSLATION_TASK = "seq2seq-translation"

# Where Seq2SeqTranslationPipeline.save_pretrained puts a target tokenizer that differs from the source one, and
# where the pipeline looks for it when the model was loaded from a folder.
DECODER_TOKENIZER_FOLDER = "decoder_tokenizer"

# n-best size of lmrecipes.qa.postprocess_qa_predictions: the pipeline's best answer is the evaluation's.
N_BEST_SIZE = 20


def _save_model_and_tokenizers(
    pipe: Pipeline,
    save_directory: str | os.PathLike,
    tokenizers: dict[str, PreTrainedTokenizerBase],
    **kwargs: Any,
) -> None:
    """Save the model and tokenizers only.

    `Pipeline.save_pretrained` would also write the registered task into config.json (`custom_pipelines`) and copy
    this file next to the weights; `pipeline(task, model=folder)` then refuses to load the folder without
    trust_remote_code, even where lmrecipes registers the task itself. lmrecipes is needed to run these pipelines
    anyway (they use lmrecipes.qa), so the folder holds what `pipeline()` loads: model and tokenizer(s).
    """
    if os.path.isfile(save_directory):
        raise ValueError(f"save_pretrained needs a directory, but {save_directory} is a file.")
    pipe.model.save_pretrained(save_directory, **kwargs)
    for subfolder, tokenizer in tokenizers.items():
        tokenizer.save_pretrained(os.path.join(save_directory, subfolder), **kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# Extractive question answering
# ----------------------------------------------------------------------------------------------------------------------


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
    neighbours) with lmrecipes.qa.prepare_eval_features; each window is one model call (so `batch_size` batches
    windows). Over all windows of a question, lmrecipes.qa.rank_answer_spans ranks the spans by start + end logit
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
        _save_model_and_tokenizers(self, save_directory, {"": self.tokenizer}, **kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# Translation with an encoder-decoder model
# ----------------------------------------------------------------------------------------------------------------------


def _load_decoder_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase | None:
    """The target tokenizer saved in DECODER_TOKENIZER_FOLDER of the model's folder, if there is one."""
    folder = Path(name_or_path) / DECODER_TOKENIZER_FOLDER if name_or_path else None
    if folder is None or not folder.is_dir():
        return None
    return AutoTokenizer.from_pretrained(folder)


class Seq2SeqTranslationPipeline(Pipeline):
    """Translate text with an encoder-decoder model, like transformers 4's "translation" pipeline.

    The source text is encoded with `tokenizer`; the generated ids are decoded with `decoder_tokenizer` (a tokenizer
    or a path), which defaults to the one saved in the model folder's `decoder_tokenizer/` (see save_pretrained),
    else to `tokenizer` itself. Generation parameters (num_beams, max_new_tokens, num_return_sequences, ...) pass
    through to `model.generate`, at construction or per call; `pad_token_id` defaults to the target tokenizer's.

    Returns [{"translation_text": ...}] for one text (one dict per returned sequence) and, for a list of texts,
    one such list per text, flattened to one dict per text when each has one sequence (as before).
    """

    _pipeline_calls_generate = True
    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(
        self, *args: Any, decoder_tokenizer: PreTrainedTokenizerBase | str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if not getattr(self.model.config, "is_encoder_decoder", False):
            raise ValueError(
                f"{type(self).__name__} needs an encoder-decoder model (config.is_encoder_decoder), got "
                f"{type(self.model).__name__}; for a decoder-only model use the 'text-generation' pipeline."
            )
        if self.tokenizer is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer for the source text.")
        if isinstance(decoder_tokenizer, (str, os.PathLike)):
            decoder_tokenizer = AutoTokenizer.from_pretrained(decoder_tokenizer)
        elif decoder_tokenizer is None:
            decoder_tokenizer = _load_decoder_tokenizer(self.model.name_or_path)
        self.decoder_tokenizer = decoder_tokenizer if decoder_tokenizer is not None else self.tokenizer
        # The base class took the source tokenizer's pad id; finished sequences are padded in the target vocabulary.
        if self.decoder_tokenizer.pad_token_id is not None:
            self._generation_defaults["pad_token_id"] = self.decoder_tokenizer.pad_token_id

    def _sanitize_parameters(
        self,
        truncation: bool | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        **generate_kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess_params, postprocess_params = {}, {}
        if truncation is not None:
            preprocess_params["truncation"] = truncation
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess_params, generate_kwargs, postprocess_params

    def __call__(
        self, inputs: str | list[str], **kwargs: Any
    ) -> list[dict[str, str]] | list[list[dict[str, str]]]:
        """Translate a text or a list of texts; keyword arguments other than `truncation` and
        `clean_up_tokenization_spaces` go to `model.generate`."""
        results = super().__call__(inputs, **kwargs)
        if isinstance(inputs, list) and all(len(result) == 1 for result in results):
            return [result[0] for result in results]
        return results

    def preprocess(self, text: str, truncation: bool = False) -> dict[str, torch.Tensor]:
        if not isinstance(text, str):
            raise TypeError(f"{type(self).__name__} translates strings, got {type(text).__name__}.")
        encoded = self.tokenizer(text, truncation=truncation, return_tensors="pt")
        # The encoder reads ids and padding mask; token_type_ids would all be 0 for a single text anyway.
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _forward(
        self, model_inputs: dict[str, torch.Tensor], **generate_kwargs: Any
    ) -> dict[str, torch.Tensor]:
        num_inputs = model_inputs["input_ids"].shape[0]
        output = self.model.generate(**model_inputs, **self._prepare_generate_kwargs(generate_kwargs))
        output_ids = output.sequences if isinstance(output, ModelOutput) else output
        # (inputs * sequences per input, length) -> (inputs, sequences per input, length)
        return {"output_ids": output_ids.reshape(num_inputs, -1, output_ids.shape[-1])}

    def postprocess(
        self, model_outputs: dict[str, torch.Tensor], clean_up_tokenization_spaces: bool | None = None
    ) -> list[dict[str, str]]:
        return [
            {
                "translation_text": self.decoder_tokenizer.decode(
                    ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces
                )
            }
            for ids in model_outputs["output_ids"][0]
        ]

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save the model and the source tokenizer, and a different target tokenizer in `decoder_tokenizer/`, so
        that `pipeline(TRANSLATION_TASK, model=save_directory)` loads all three back."""
        tokenizers = {"": self.tokenizer}
        if self.decoder_tokenizer is not self.tokenizer:
            tokenizers[DECODER_TOKENIZER_FOLDER] = self.decoder_tokenizer
        _save_model_and_tokenizers(self, save_directory, tokenizers, **kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------------------------------

PIPELINES = {
    QUESTION_ANSWERING_TASK: (ExtractiveQuestionAnsweringPipeline, AutoModelForQuestionAnswering),
    TRANSLATION_TASK: (Seq2SeqTranslationPipeline, AutoModelForSeq2SeqLM),
}


def register_pipelines() -> None:
    """Register the tasks with transformers' PIPELINE_REGISTRY, so `pipeline(task, model=...)` builds them.

    Safe to call more than once: a task already registered with the same class is left as it is (registering again
    would only log an "overwriting" warning).
    """
    for task, (pipeline_class, auto_model_class) in PIPELINES.items():
        registered = PIPELINE_REGISTRY.supported_tasks.get(task)
        if registered is not None and registered["impl"] is pipeline_class:
            continue
        PIPELINE_REGISTRY.register_pipeline(
            task, pipeline_class=pipeline_class, pt_model=auto_model_class, type="text"
        )
