"""What each model family is, in one record per model type, and its registration with transformers' Auto classes.

Two registrations happen for every family:
- `AutoConfig.register` / `AutoModel*.register` make the families load like built-in models whenever lmrecipes is
  imported (no `trust_remote_code` needed).
- `register_for_auto_class` makes `save_pretrained` write `auto_map` into config.json and copy the configuration and
  modeling files next to the weights, so a saved folder (or Hub repo) loads with `trust_remote_code=True` in a
  Python where lmrecipes is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PretrainedConfig,
)

from lmrecipes.models.lstm_lm import (
    LSTMLMConfig,
    LSTMLMForCausalLM,
    LSTMLMForSequenceClassification,
    LSTMLMModel,
)
from lmrecipes.models.mini_bert import (
    MiniBertConfig,
    MiniBertForMaskedLM,
    MiniBertForQuestionAnswering,
    MiniBertForSequenceClassification,
    MiniBertForTokenClassification,
    MiniBertModel,
)
from lmrecipes.models.mini_gpt import (
    MiniGPTConfig,
    MiniGPTForCausalLM,
    MiniGPTForSequenceClassification,
    MiniGPTModel,
)
from lmrecipes.tokenization import TokenizerKind


@dataclass(frozen=True)
class Family:
    """Everything the recipes need to know about one model type."""

    config_class: type[PretrainedConfig]
    heads: dict[type, type]  # auto class -> model class
    objective: Literal["causal", "masked"]  # how it is pretrained
    tokenizer_kind: TokenizerKind  # the tokenizer a recipe trains for it
    dropout_fields: tuple[str, ...]  # what a recipe's single `dropout` field sets
    is_recurrent: bool = False  # its forward carries a state between blocks (truncated BPTT)


FAMILIES: dict[str, Family] = {
    "lstm_lm": Family(
        config_class=LSTMLMConfig,
        heads={
            AutoModel: LSTMLMModel,
            AutoModelForCausalLM: LSTMLMForCausalLM,
            AutoModelForSequenceClassification: LSTMLMForSequenceClassification,
        },
        objective="causal",
        tokenizer_kind="byte_bpe",
        dropout_fields=("embedding_dropout", "hidden_dropout", "output_dropout"),
        is_recurrent=True,
    ),
    "mini_bert": Family(
        config_class=MiniBertConfig,
        heads={
            AutoModel: MiniBertModel,
            AutoModelForMaskedLM: MiniBertForMaskedLM,
            AutoModelForSequenceClassification: MiniBertForSequenceClassification,
            AutoModelForQuestionAnswering: MiniBertForQuestionAnswering,
            AutoModelForTokenClassification: MiniBertForTokenClassification,
        },
        objective="masked",
        tokenizer_kind="wordpiece",
        dropout_fields=("hidden_dropout_prob", "attention_probs_dropout_prob"),
    ),
    "mini_gpt": Family(
        config_class=MiniGPTConfig,
        heads={
            AutoModel: MiniGPTModel,
            AutoModelForCausalLM: MiniGPTForCausalLM,
            AutoModelForSequenceClassification: MiniGPTForSequenceClassification,
        },
        objective="causal",
        tokenizer_kind="byte_bpe",
        dropout_fields=("embedding_dropout", "hidden_dropout", "attention_dropout"),
    ),
}


def register_families() -> None:
    """Register every family with the Auto classes; safe to call more than once."""
    for model_type, family in FAMILIES.items():
        AutoConfig.register(model_type, family.config_class, exist_ok=True)
        family.config_class.register_for_auto_class()
        for auto_class, model_class in family.heads.items():
            auto_class.register(family.config_class, model_class, exist_ok=True)
            model_class.register_for_auto_class(auto_class.__name__)


def complete_auto_map(config: PretrainedConfig) -> PretrainedConfig:
    """Point `config.auto_map` at every head of the family, not only the one being saved.

    `save_pretrained` records just the saved class, so a pretrained causal LM pushed to the Hub could not be
    loaded as `AutoModelForSequenceClassification` with remote code. All heads live in the same modeling file,
    which is copied next to the weights anyway, so listing them all is enough.
    """
    family, model_type = FAMILIES[config.model_type], config.model_type
    auto_map = {"AutoConfig": f"configuration_{model_type}.{family.config_class.__name__}"}
    auto_map.update(
        {auto.__name__: f"modeling_{model_type}.{model.__name__}" for auto, model in family.heads.items()}
    )
    config.auto_map = auto_map
    return config


def is_masked_lm(config: PretrainedConfig) -> bool:
    """Whether the model is one of our masked-LM families (a model of another type counts as causal)."""
    family = FAMILIES.get(config.model_type)
    return family is not None and family.objective == "masked"
