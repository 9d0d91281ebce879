"""LSTM language model family (`model_type = "lstm_lm"`).

The recurrent-state cache, `LSTMLMCache`, lives in `modeling_lstm_lm`; models return it in `cache`.
"""

from .configuration_lstm_lm import LSTMLMConfig
from .modeling_lstm_lm import (
    LSTMLMForCausalLM,
    LSTMLMForSequenceClassification,
    LSTMLMModel,
    LSTMLMPreTrainedModel,
)

__all__ = [
    "LSTMLMConfig",
    "LSTMLMForCausalLM",
    "LSTMLMForSequenceClassification",
    "LSTMLMModel",
    "LSTMLMPreTrainedModel",
]
