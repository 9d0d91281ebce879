"""Registers the model families with transformers' Auto classes.

Two registrations happen for every family:
- `AutoConfig.register` / `AutoModel*.register` make the families load like built-in models whenever lmrecipes is
  imported (no `trust_remote_code` needed).
- `register_for_auto_class` makes `save_pretrained` write `auto_map` into config.json and copy the configuration and
  modeling files next to the weights, so a saved folder (or Hub repo) loads with `trust_remote_code=True` in a
  Python where lmrecipes is not installed.
"""

from __future__ import annotations

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

# model_type -> (config class, {auto class: model class})
FAMILIES: dict[str, tuple[type[PretrainedConfig], dict[type, type]]] = {
    "lstm_lm": (
        LSTMLMConfig,
        {
            AutoModel: LSTMLMModel,
            AutoModelForCausalLM: LSTMLMForCausalLM,
            AutoModelForSequenceClassification: LSTMLMForSequenceClassification,
        },
    ),
    "mini_bert": (
        MiniBertConfig,
        {
            AutoModel: MiniBertModel,
            AutoModelForMaskedLM: MiniBertForMaskedLM,
            AutoModelForSequenceClassification: MiniBertForSequenceClassification,
            AutoModelForQuestionAnswering: MiniBertForQuestionAnswering,
            AutoModelForTokenClassification: MiniBertForTokenClassification,
        },
    ),
    "mini_gpt": (
        MiniGPTConfig,
        {
            AutoModel: MiniGPTModel,
            AutoModelForCausalLM: MiniGPTForCausalLM,
            AutoModelForSequenceClassification: MiniGPTForSequenceClassification,
        },
    ),
}


def register_families() -> None:
    """Register every family with the Auto classes; safe to call more than once."""
    for model_type, (config_class, heads) in FAMILIES.items():
        AutoConfig.register(model_type, config_class, exist_ok=True)
        config_class.register_for_auto_class()
        for auto_class, model_class in heads.items():
            auto_class.register(config_class, model_class, exist_ok=True)
            model_class.register_for_auto_class(auto_class.__name__)


def complete_auto_map(config: PretrainedConfig) -> PretrainedConfig:
    """Point `config.auto_map` at every head of the family, not only the one being saved.

    `save_pretrained` records just the saved class, so a pretrained causal LM pushed to the Hub could not be
    loaded as `AutoModelForSequenceClassification` with remote code. All heads live in the same modeling file,
    which is copied next to the weights anyway, so listing them all is enough.
    """
    config_class, heads = FAMILIES[config.model_type]
    family = config.model_type
    auto_map = {"AutoConfig": f"configuration_{family}.{config_class.__name__}"}
    auto_map.update({auto.__name__: f"modeling_{family}.{model.__name__}" for auto, model in heads.items()})
    config.auto_map = auto_map
    return config
