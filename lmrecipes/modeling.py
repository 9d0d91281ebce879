"""Building a model of any family from the size fields of a recipe, or loading one to continue from."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
)

from lmrecipes.errors import RecipeError
from lmrecipes.families import FAMILIES, complete_auto_map

_SIZE_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "embedding_size",
    "max_position_embeddings",
    "tie_word_embeddings",
)


logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    """Which model to train: a family and its sizes, or a checkpoint to continue from."""

    model_type: str = field(
        default="mini_gpt", metadata={"help": "Model family.", "choices": sorted(FAMILIES)}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Continue from this checkpoint or output folder instead of a new model."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer folder; when unset, one is trained on the training split."}
    )
    tokenizer_vocab_size: int = field(
        default=8000, metadata={"help": "Vocabulary size of a newly trained tokenizer."}
    )
    hidden_size: int | None = field(
        default=None, metadata={"help": "Hidden size (family default when unset)."}
    )
    num_hidden_layers: int | None = field(default=None, metadata={"help": "Number of layers."})
    num_attention_heads: int | None = field(
        default=None, metadata={"help": "Attention heads (mini_bert, mini_gpt)."}
    )
    intermediate_size: int | None = field(default=None, metadata={"help": "MLP size (mini_bert, mini_gpt)."})
    embedding_size: int | None = field(default=None, metadata={"help": "Embedding size (lstm_lm)."})
    max_position_embeddings: int | None = field(default=None, metadata={"help": "Maximum sequence length."})
    tie_word_embeddings: bool | None = field(
        default=None, metadata={"help": "Tie input and output embeddings."}
    )
    dropout: float | None = field(
        default=None, metadata={"help": "Sets every dropout probability of the family."}
    )
    truncated_bptt: bool = field(
        default=False,
        metadata={
            "help": "lstm_lm only: carry the LSTM state across consecutive blocks (truncated BPTT over parallel "
            "streams of the corpus in order; see docs/tbptt.md). Needs streaming: false."
        },
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "Attention implementation: sdpa (default), eager, flash_attention_2, ..."},
    )

    def __post_init__(self) -> None:
        if self.model_type not in FAMILIES:
            raise RecipeError(
                f"model_type: unknown family '{self.model_type}', expected one of {sorted(FAMILIES)}"
            )


def build_config(model_args: ModelArguments, tokenizer) -> PretrainedConfig:
    """A new config of the family, sized by the recipe, with the tokenizer's vocabulary and special tokens.

    With `tokenizer=None`, the vocabulary is the recipe's tokenizer_vocab_size: the sizes can be checked before
    any tokenizer exists.
    """
    sizes = {
        name: getattr(model_args, name) for name in _SIZE_FIELDS if getattr(model_args, name) is not None
    }
    if model_args.dropout is not None:
        sizes.update(dict.fromkeys(FAMILIES[model_args.model_type].dropout_fields, model_args.dropout))
    if tokenizer is None:
        return _new_config(model_args.model_type, **sizes, vocab_size=model_args.tokenizer_vocab_size)
    special = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if FAMILIES[model_args.model_type].objective == "causal":
        special |= {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    return complete_auto_map(_new_config(model_args.model_type, **sizes, **special))


def _new_config(model_type: str, **fields) -> PretrainedConfig:
    try:
        return AutoConfig.for_model(model_type, **fields)
    except ValueError as error:  # the config's own checks of the recipe's sizes: bad input, not a bug
        raise RecipeError(str(error)) from error


def auto_class_for(model_type: str):
    return AutoModelForCausalLM if FAMILIES[model_type].objective == "causal" else AutoModelForMaskedLM


def build_pretraining_model(model_args: ModelArguments, tokenizer) -> PreTrainedModel:
    """A fresh model for pretraining, or the checkpoint named by `model_name_or_path`."""
    auto_class = auto_class_for(model_args.model_type)
    extra = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if model_args.model_name_or_path:
        model = auto_class.from_pretrained(model_args.model_name_or_path, **extra)
        if model.config.model_type != model_args.model_type:
            raise RecipeError(
                f"model_type is '{model_args.model_type}' but {model_args.model_name_or_path} holds a "
                f"'{model.config.model_type}' model"
            )
    else:
        model = auto_class.from_config(build_config(model_args, tokenizer), **extra)
    complete_auto_map(model.config)
    return model


def max_positions(config: PretrainedConfig) -> int | None:
    """The longest sequence the model accepts; None for recurrent models, which have no limit."""
    return getattr(config, "max_position_embeddings", None)


def new_tokens_that_fit(config: PretrainedConfig, prompt_length: int, max_new_tokens: int) -> int:
    """`max_new_tokens`, lowered so that prompt + generated tokens stay within the position table (a warning says
    so); an error when the prompt alone fills it. Generation past the table would index out of range."""
    limit = max_positions(config)
    if limit is None or prompt_length + max_new_tokens <= limit:
        return max_new_tokens
    room = limit - prompt_length
    if room < 1:
        raise RecipeError(
            f"the prompt has {prompt_length} tokens but the model's max_position_embeddings is {limit}: "
            "nothing can be generated after it; shorten the prompt."
        )
    logger.warning(
        "max_new_tokens=%d lowered to %d: prompt (%d tokens) + new tokens must fit max_position_embeddings=%d",
        max_new_tokens,
        room,
        prompt_length,
        limit,
    )
    return room
