"""mini_gpt: a small GPT-2 style decoder (causal LM, sequence classification, encoder-decoder decoder)."""

from .configuration_mini_gpt import MiniGPTConfig
from .modeling_mini_gpt import (
    MiniGPTForCausalLM,
    MiniGPTForSequenceClassification,
    MiniGPTModel,
    MiniGPTPreTrainedModel,
)

__all__ = [
    "MiniGPTConfig",
    "MiniGPTPreTrainedModel",
    "MiniGPTModel",
    "MiniGPTForCausalLM",
    "MiniGPTForSequenceClassification",
]
