"""FLOPs per token and matmul peaks: what the logged MFU and the speed benchmark are measured against."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_SIZES
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

from lmrecipes.models.lstm_lm import LSTMLMConfig, LSTMLMForCausalLM
from lmrecipes.models.mini_bert import MiniBertConfig, MiniBertForMaskedLM
from lmrecipes.models.mini_gpt import MiniGPTConfig, MiniGPTForCausalLM
from lmrecipes.throughput import (
    matmul_weight_count,
    measured_matmul_peaks,
    sparse_head_weight_count,
    training_flops_per_token,
)

HIDDEN, LAYERS, INTERMEDIATE, VOCAB = TINY_SIZES["hidden_size"], 2, TINY_SIZES["intermediate_size"], 100


def test_mini_gpt_counts_as_gpt2_the_block_linears_and_the_tied_head_and_half_the_attention_scores():
    sizes = dict(vocab_size=VOCAB, max_position_embeddings=16, **TINY_SIZES)
    ours = MiniGPTForCausalLM(MiniGPTConfig(**sizes))
    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=4, n_inner=INTERMEDIATE, n_positions=16,
            bos_token_id=0, eos_token_id=0,
        )
    )  # fmt: skip
    per_layer = 4 * HIDDEN * HIDDEN + 2 * HIDDEN * INTERMEDIATE  # q, k, v, out projections; MLP in and out
    assert matmul_weight_count(ours) == matmul_weight_count(gpt2) == LAYERS * per_layer + VOCAB * HIDDEN
    causal_attention = 6 * LAYERS * 16 * HIDDEN
    assert training_flops_per_token(ours, seq_len=16) == 6 * matmul_weight_count(ours) + causal_attention


def test_mini_bert_attends_both_ways_and_the_lstm_has_no_attention():
    sizes = dict(vocab_size=VOCAB, max_position_embeddings=16, **TINY_SIZES)
    ours, bert = MiniBertForMaskedLM(MiniBertConfig(**sizes)), BertForMaskedLM(BertConfig(**sizes))
    assert matmul_weight_count(ours) == matmul_weight_count(bert)
    assert training_flops_per_token(ours, 16) == 6 * matmul_weight_count(ours) + 12 * LAYERS * 16 * HIDDEN

    lstm = LSTMLMForCausalLM(
        LSTMLMConfig(vocab_size=VOCAB, embedding_size=8, hidden_size=8, num_hidden_layers=2)
    )
    gates = 4 * 8 * (8 + 8) * 2  # 4 gates x hidden x (input + hidden), 2 layers
    assert matmul_weight_count(lstm) == gates + VOCAB * 8
    assert training_flops_per_token(lstm, 16) == training_flops_per_token(lstm, 1024)  # no sequence term


def test_matmul_peak_is_the_fastest_backend_measured():
    peaks = measured_matmul_peaks(torch.device("cpu"), torch.float32, size=64, repeats=2)
    assert set(peaks) <= {"torch.matmul", "oneDNN matmul"} and "torch.matmul" in peaks
    assert all(flops > 0 for flops in peaks.values())


def test_an_adaptive_softmax_counts_its_head_not_its_tail_clusters():
    sizes = dict(
        vocab_size=VOCAB, embedding_size=16, hidden_size=16, num_hidden_layers=2, tie_word_embeddings=False
    )
    adaptive = LSTMLMForCausalLM(LSTMLMConfig(**sizes, adaptive_softmax_cutoffs=[20, 50]))
    gates = 4 * 16 * (16 + 16) * 2
    assert (
        matmul_weight_count(adaptive) == gates + adaptive.lm_head.head.weight.numel() == gates + 16 * (20 + 2)
    )


def test_a_sparse_prediction_head_counts_only_at_the_labelled_positions():
    sizes = dict(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    dense = MiniBertForMaskedLM(MiniBertConfig(**sizes))
    sparse = MiniBertForMaskedLM(MiniBertConfig(**sizes, sparse_prediction=True))
    head = 16 * 16 + 16 * VOCAB  # the MLM transform and the decoder
    assert sparse_head_weight_count(dense) == 0 and sparse_head_weight_count(sparse) == head
    assert training_flops_per_token(sparse, 8, labelled_fraction=1.0) == training_flops_per_token(dense, 8)
    saved = training_flops_per_token(dense, 8) - training_flops_per_token(sparse, 8, labelled_fraction=0.15)
    assert saved == pytest.approx(6 * 0.85 * head)
