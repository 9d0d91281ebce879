"""Tiny configurations and inputs for every model class, shared by the conformance suite.

Each head is described by its *kind* (what its labels and outputs look like), which is all the common tests need to
build inputs and compute the reference loss by hand.
"""

from __future__ import annotations

import torch

import lmrecipes  # noqa: F401  (registers the families with the Auto classes)
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

VOCAB_SIZE = 99
PAD_ID, BOS_ID = 0, 1
NUM_LABELS = 3

TINY_CONFIGS = {
    "lstm_lm": lambda **kw: LSTMLMConfig(
        **{
            "vocab_size": VOCAB_SIZE,
            "embedding_size": 24,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "embedding_dropout": 0.0,
            "hidden_dropout": 0.0,
            "output_dropout": 0.0,
            "pad_token_id": PAD_ID,
            "bos_token_id": BOS_ID,
            "eos_token_id": BOS_ID,
            "num_labels": NUM_LABELS,
            **kw,
        }
    ),
    "mini_bert": lambda **kw: MiniBertConfig(
        **{
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 37,
            "max_position_embeddings": 64,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "pad_token_id": PAD_ID,
            "num_labels": NUM_LABELS,
            **kw,
        }
    ),
    "mini_gpt": lambda **kw: MiniGPTConfig(
        **{
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 37,
            "max_position_embeddings": 64,
            "hidden_dropout": 0.0,
            "attention_dropout": 0.0,
            "embedding_dropout": 0.0,
            "pad_token_id": PAD_ID,
            "bos_token_id": BOS_ID,
            "eos_token_id": BOS_ID,
            "num_labels": NUM_LABELS,
            **kw,
        }
    ),
}

# Head class -> (family, kind). Kinds: base, causal_lm, masked_lm, sequence_classification, question_answering,
# token_classification.
HEADS = {
    LSTMLMModel: ("lstm_lm", "base"),
    LSTMLMForCausalLM: ("lstm_lm", "causal_lm"),
    LSTMLMForSequenceClassification: ("lstm_lm", "sequence_classification"),
    MiniBertModel: ("mini_bert", "base"),
    MiniBertForMaskedLM: ("mini_bert", "masked_lm"),
    MiniBertForSequenceClassification: ("mini_bert", "sequence_classification"),
    MiniBertForQuestionAnswering: ("mini_bert", "question_answering"),
    MiniBertForTokenClassification: ("mini_bert", "token_classification"),
    MiniGPTModel: ("mini_gpt", "base"),
    MiniGPTForCausalLM: ("mini_gpt", "causal_lm"),
    MiniGPTForSequenceClassification: ("mini_gpt", "sequence_classification"),
}
HEADS_WITH_LOSS = [cls for cls, (_, kind) in HEADS.items() if kind != "base"]
CAUSAL_LMS = [cls for cls, (_, kind) in HEADS.items() if kind == "causal_lm"]
ATTENTION_FAMILIES = {"mini_bert", "mini_gpt"}


def family_of(model_class: type) -> str:
    return HEADS[model_class][0]


def kind_of(model_class: type) -> str:
    return HEADS[model_class][1]


def tiny_model(model_class: type, seed: int = 0, **config_overrides):
    torch.manual_seed(seed)
    config = TINY_CONFIGS[family_of(model_class)](**config_overrides)
    return model_class(config).eval()


def random_input_ids(batch_size: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """Token ids that avoid the special ids, so no position is accidentally padding."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(2, VOCAB_SIZE, (batch_size, seq_len), generator=generator)


def padded_batch(lengths: list[int], seq_len: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids with `lengths` real tokens per row, padded on `side` with the pad id; and the attention mask."""
    input_ids = random_input_ids(len(lengths), seq_len, seed=3)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        real = slice(0, length) if side == "right" else slice(seq_len - length, seq_len)
        attention_mask[row, real] = 1
    input_ids = input_ids.masked_fill(attention_mask == 0, PAD_ID)
    return input_ids, attention_mask


def make_labels(model_class: type, input_ids: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed + 1)
    batch_size, seq_len = input_ids.shape
    kind = kind_of(model_class)
    if kind in ("causal_lm", "masked_lm"):
        return {"labels": input_ids.clone()}
    if kind == "sequence_classification":
        return {"labels": torch.randint(0, NUM_LABELS, (batch_size,), generator=generator)}
    if kind == "token_classification":
        return {"labels": torch.randint(0, NUM_LABELS, (batch_size, seq_len), generator=generator)}
    if kind == "question_answering":
        start = torch.randint(0, seq_len // 2, (batch_size,), generator=generator)
        return {"start_positions": start, "end_positions": start + seq_len // 4}
    raise ValueError(f"{model_class.__name__} has no labels")


def manual_loss(model_class: type, outputs, labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss each head should return, written out with plain cross-entropy."""
    ce = torch.nn.functional.cross_entropy
    kind = kind_of(model_class)
    if kind == "causal_lm":
        logits, target = outputs.logits[:, :-1], labels["labels"][:, 1:]
        return ce(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100)
    if kind in ("masked_lm", "token_classification"):
        logits = outputs.logits
        return ce(logits.reshape(-1, logits.size(-1)), labels["labels"].reshape(-1), ignore_index=-100)
    if kind == "sequence_classification":
        return ce(outputs.logits, labels["labels"])
    if kind == "question_answering":
        return (
            ce(outputs.start_logits, labels["start_positions"])
            + ce(outputs.end_logits, labels["end_positions"])
        ) / 2
    raise ValueError(kind)


def main_output(model_class: type, outputs) -> torch.Tensor:
    """The tensor that identifies a model's answer: logits, or the last hidden state for base models."""
    kind = kind_of(model_class)
    if kind == "base":
        return outputs.last_hidden_state
    if kind == "question_answering":
        return torch.stack([outputs.start_logits, outputs.end_logits], dim=-1)
    return outputs.logits
