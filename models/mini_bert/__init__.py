"""mini_bert: a small BERT-style bidirectional encoder (masked LM pretraining, classification, QA, tagging)."""

from .configuration_mini_bert import MiniBertConfig
from .modeling_mini_bert import (
    MiniBertForMaskedLM,
    MiniBertForQuestionAnswering,
    MiniBertForSequenceClassification,
    MiniBertForTokenClassification,
    MiniBertModel,
    MiniBertPreTrainedModel,
)

__all__ = [
    "MiniBertConfig",
    "MiniBertPreTrainedModel",
    "MiniBertModel",
    "MiniBertForMaskedLM",
    "MiniBertForSequenceClassification",
    "MiniBertForQuestionAnswering",
    "MiniBertForTokenClassification",
]
