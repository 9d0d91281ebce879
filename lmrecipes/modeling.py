"""Building a model of any family from the size fields of a recipe, or loading one to continue from; loading the
folders a recipe names (`load_pretrained`) with one-line errors."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lmrecipes.errors import MissingFileError, RecipeError
from lmrecipes.families import FAMILIES, complete_auto_map
from lmrecipes.tokenization import TOKENIZER_FILES, TOKENIZER_KINDS

# The recipe's fields that a new model's config takes as they are (each family has some of them).
_CONFIG_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "embedding_size",
    "max_position_embeddings",
    "tie_word_embeddings",
    "initializer_range",
    "adaptive_softmax_cutoffs",
    "sparse_prediction",
    "hidden_act",
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
    tokenizer_kind: str | None = field(
        default=None,
        metadata={
            "help": "Kind of a newly trained tokenizer: byte_bpe, wordpiece or word (word-level, for word-level "
            "corpora such as WikiText); None: the family's (byte_bpe for lstm_lm and mini_gpt, wordpiece for "
            "mini_bert).",
            "choices": TOKENIZER_KINDS,
        },
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
    initializer_range: float | None = field(
        default=None,
        metadata={
            "help": "Standard deviation of the weight initialisation (lstm_lm: of the token embedding)."
        },
    )
    adaptive_softmax_cutoffs: list[int] | None = field(
        default=None,
        metadata={
            "help": "lstm_lm and mini_gpt: an adaptive softmax head whose clusters start at these token ids (the word "
            "tokenizer numbers words by frequency), e.g. 2000 10000; needs tie_word_embeddings false."
        },
    )
    sparse_prediction: bool | None = field(
        default=None,
        metadata={
            "help": "mini_bert only: run the MLM head at the masked positions only (the same loss, computed without "
            "the logits of the unmasked positions)."
        },
    )
    hidden_act: str | None = field(
        default=None,
        metadata={
            "help": "mini_bert and mini_gpt: the MLP's activation, a key of transformers' ACT2FN (gelu, gelu_new, "
            "relu2, silu, ...); family default when unset."
        },
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
        family = FAMILIES[self.model_type]
        if self.tokenizer_kind is None:
            self.tokenizer_kind = family.tokenizer_kind
        if family.objective == "masked" and self.tokenizer_kind != "wordpiece":
            raise RecipeError(
                f"tokenizer_kind: {self.tokenizer_kind} has no [MASK] token, which {self.model_type}'s masked-LM "
                "pretraining needs: use wordpiece"
            )


def build_config(model_args: ModelArguments, tokenizer) -> PretrainedConfig:
    """A new config of the family, sized by the recipe, with the tokenizer's vocabulary and special tokens.

    With `tokenizer=None`, the vocabulary is the recipe's tokenizer_vocab_size: the sizes can be checked before
    any tokenizer exists.
    """
    fields = _recipe_config_fields(model_args)
    if model_args.dropout is not None:
        fields.update(dict.fromkeys(FAMILIES[model_args.model_type].dropout_fields, model_args.dropout))
    if tokenizer is None:
        return _new_config(model_args.model_type, **fields, vocab_size=model_args.tokenizer_vocab_size)
    special = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if FAMILIES[model_args.model_type].objective == "causal":
        special |= {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    return complete_auto_map(_new_config(model_args.model_type, **fields, **special))


def _recipe_config_fields(model_args: ModelArguments) -> dict[str, Any]:
    """The config fields the recipe sets, each checked to exist in the family's config."""
    fields = {
        name: getattr(model_args, name) for name in _CONFIG_FIELDS if getattr(model_args, name) is not None
    }
    config_fields = FAMILIES[model_args.model_type].config_class.__dataclass_fields__
    for name in fields:
        if name not in config_fields:  # a config keeps unknown keyword arguments silently, as attributes
            raise RecipeError(f"{name}: {model_args.model_type} models have no such field; remove it")
    return fields


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
        model = load_pretrained(auto_class, model_args.model_name_or_path, "model_name_or_path", **extra)
        if model.config.model_type != model_args.model_type:
            raise RecipeError(
                f"model_type is '{model_args.model_type}' but {model_args.model_name_or_path} holds a "
                f"'{model.config.model_type}' model"
            )
        fields = _recipe_config_fields(model_args)
        # How the loss is computed, not what the model is: a recipe may change it on a saved model.
        if "sparse_prediction" in fields:
            model.config.sparse_prediction = fields.pop("sparse_prediction")
        for name, value in fields.items():  # the rest is the architecture, which a continued model keeps
            if getattr(model.config, name) != value:
                raise RecipeError(
                    f"{name}: {model_args.model_name_or_path} holds a model with {name}="
                    f"{getattr(model.config, name)!r}; remove {name} from the recipe to continue it"
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


# The decoding of every sample lmrecipes prints (end of run, each evaluation): top-k sampling, because greedy
# decoding of a small model loops on one phrase.
SAMPLE_TOP_K = 40
SAMPLE_TEMPERATURE = 0.8


@torch.no_grad()
def generate_sample(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, max_new_tokens: int, *, seed: int
) -> str:
    """A seeded top-k sample continuing `prompt` (empty: from the beginning-of-text token), decoded.

    Runs in eval mode and on its own random stream, so sampling during training changes neither the model's
    dropout state nor the training run's random numbers.
    """
    inputs = tokenizer(prompt or tokenizer.bos_token, return_tensors="pt").to(model.device)
    max_new_tokens = new_tokens_that_fit(model.config, inputs["input_ids"].shape[1], max_new_tokens)
    was_training = model.training
    model.eval()
    devices = [model.device] if model.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=True,
                top_k=SAMPLE_TOP_K,
                temperature=SAMPLE_TEMPERATURE,
                pad_token_id=tokenizer.pad_token_id,
            )
    finally:
        model.train(was_training)
    return tokenizer.decode(output[0], skip_special_tokens=True)


# --------------------------------------------------------------------------------------------- recipe folders


@contextmanager
def reading_pretrained(what: Literal["model", "tokenizer"], **folders: str | Path) -> Iterator[None]:
    """Around `from_pretrained` calls on the folders (or Hub ids) a recipe names, as `field=path`: turn what the
    libraries raise for an empty folder or a damaged file into one line naming the field, the folder and the file.

    transformers says "Couldn't instantiate the backend tokenizer" for a folder without a tokenizer, safetensors
    "incomplete metadata" for a truncated model.safetensors, neither naming a file; the folder is looked at only
    once loading failed, so whatever the libraries can load still loads.
    """
    try:
        yield
    except RecipeError:
        raise
    except (OSError, ValueError, SafetensorError) as error:
        raise _unloadable_error(what, folders, error) from error


def load_pretrained(auto_class: type, path: str | Path, field: str, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained(path, **kwargs)` (an Auto model, config or tokenizer class) for the recipe field
    `field`, with the one-line errors of `reading_pretrained`."""
    is_tokenizer = auto_class is AutoTokenizer or issubclass(auto_class, PreTrainedTokenizerBase)
    with reading_pretrained("tokenizer" if is_tokenizer else "model", **{field: path}):
        return auto_class.from_pretrained(path, **kwargs)


def _unloadable_error(what: str, folders: dict[str, str | Path], error: BaseException) -> RecipeError:
    """The RecipeError for a `what` that failed to load from `folders` (field -> path) with `error`."""
    local = {name: path for name, path in folders.items() if os.path.isdir(path)}
    for name, path in local.items():
        problem = _folder_problem(Path(path), what)
        if problem:
            return RecipeError(f"{name}={str(path)!r}: {problem}")
    for name, path in folders.items():
        if name not in local:
            return MissingFileError(
                f"{name}={str(path)!r} is not a folder, and loading it as a Hub id failed: {_first_line(error)}"
            )
    named = ", ".join(f"{name}={str(path)!r}" for name, path in folders.items())
    return RecipeError(f"{named}: cannot load the {what}: {_first_line(error)}")


def _folder_problem(folder: Path, what: str) -> str | None:
    """What keeps `what` from loading out of `folder`, if the files show it; None when they look fine."""
    names = {path.name for path in folder.iterdir()}
    if what == "tokenizer" and not names & {*TOKENIZER_FILES, "tokenizer_config.json"}:
        contents = "it is empty" if not names else f"none of {', '.join(TOKENIZER_FILES)} in it"
        return f"the folder holds no tokenizer ({contents})"
    if what == "model" and "config.json" not in names:
        return f"the folder holds no model ({'it is empty' if not names else 'no config.json in it'})"
    for name in sorted(name for name in names if name.endswith(".json")):
        try:
            json.loads((folder / name).read_text(encoding="utf-8"))
        except (ValueError, OSError) as json_error:
            return f"{name} is damaged or truncated (not valid JSON: {json_error}); save or copy it again"
    if what == "model":
        weights = sorted(name for name in names if name.endswith(".safetensors"))
        for name in weights:
            try:
                with safe_open(folder / name, framework="pt"):
                    pass
            except (SafetensorError, OSError) as weights_error:
                return f"{name} is damaged or truncated ({weights_error}); save or copy it again"
        if not weights and not any(name.endswith(".bin") for name in names):
            return "the folder holds no model weights (no model.safetensors in it)"
    return None


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
