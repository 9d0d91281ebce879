"""The model a user would train instead of ours, at the same size: transformers' built-in twin of each family
(GPT2LMHeadModel, BertForMaskedLM) and, for the LSTM, the textbook nn.LSTM language model."""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel, PretrainedConfig


class PlainLSTMLanguageModel(nn.Module):
    """nn.Embedding -> nn.LSTM -> nn.Linear (tied), nothing else."""

    def __init__(self, vocab_size: int, size: int, num_layers: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, size)
        self.embedding_dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(size, size, num_layers=num_layers, dropout=dropout, batch_first=True)
        self.output_dropout = nn.Dropout(dropout)
        self.head = nn.Linear(size, vocab_size)
        self.head.weight = self.embedding.weight

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, **unused) -> dict[str, torch.Tensor]:
        outputs, _ = self.lstm(self.embedding_dropout(self.embedding(input_ids)))
        logits = self.head(self.output_dropout(outputs))
        # Shift the labels, not the logits: slicing the (batch, seq, vocab) logits would copy them.
        next_tokens = nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
        loss = nn.functional.cross_entropy(
            logits.view(-1, logits.shape[-1]), next_tokens.reshape(-1), ignore_index=-100
        )
        return {"loss": loss, "logits": logits}


def built_in_twin(config: PretrainedConfig, attn_implementation: str | None = None) -> nn.Module:
    """The twin of one of our models, from its config: same sizes, vocabulary, dropouts and special tokens, so that
    the two have exactly as many parameters (the callers assert it) unless ours has an adaptive softmax head: the
    twin then keeps the full, tied softmax that a user of the built-in model trains."""
    c = config
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if c.model_type == "mini_gpt":
        return GPT2LMHeadModel(
            GPT2Config(
                vocab_size=c.vocab_size, n_embd=c.hidden_size, n_layer=c.num_hidden_layers,
                n_head=c.num_attention_heads, n_inner=c.intermediate_size, n_positions=c.max_position_embeddings,
                resid_pdrop=c.hidden_dropout, attn_pdrop=c.attention_dropout, embd_pdrop=c.embedding_dropout,
                # given even when None: GPT-2's default 50256 lies outside a small vocabulary
                bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id, **extra,
            )
        )  # fmt: skip
    if c.model_type == "mini_bert":
        return BertForMaskedLM(
            BertConfig(
                vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
                num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
                max_position_embeddings=c.max_position_embeddings, hidden_dropout_prob=c.hidden_dropout_prob,
                attention_probs_dropout_prob=c.attention_probs_dropout_prob, pad_token_id=c.pad_token_id, **extra,
            )
        )  # fmt: skip
    if c.model_type == "lstm_lm":
        if c.embedding_size != c.hidden_size:
            raise ValueError("the plain LSTM twin (tied head) needs embedding_size == hidden_size")
        return PlainLSTMLanguageModel(c.vocab_size, c.hidden_size, c.num_hidden_layers, c.hidden_dropout)
    raise ValueError(f"no built-in twin for model_type {c.model_type!r}")
