"""The "seq2seq-translation" pipeline: any AutoModelForSeq2SeqLM, e.g. an EncoderDecoderModel with a mini_bert
encoder and a mini_gpt decoder, whose source and target tokenizers may differ.

    translate = pipeline("seq2seq-translation", model=model, tokenizer=source_tok, decoder_tokenizer=target_tok)
    translate("the cat sat on the mat.", num_beams=4, max_new_tokens=32)
    # [{'translation_text': '...'}]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer
from transformers.pipelines.base import Pipeline
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils import ModelOutput

from lmrecipes.pipelines.common import save_model_and_tokenizers
from lmrecipes.translation.modeling import DECODER_TOKENIZER_FOLDER

TRANSLATION_TASK = "seq2seq-translation"


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
        save_model_and_tokenizers(self, save_directory, tokenizers, **kwargs)
