"""Tests specific to mini_gpt: GPT-2 equivalence, caching, padding, generation, cross-attention, checkpointing.

The generic behaviour every head shares (save/load, remote code, losses, pipelines, Trainer) is covered by
test_modeling_common.py; here are the properties that only a GPT-style decoder has.
"""

from __future__ import annotations

import os

import pytest
import test_modeling_common
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    BertConfig,
    BertModel,
    EncoderDecoderCache,
    EncoderDecoderModel,
    GPT2Config,
    GPT2LMHeadModel,
)
from transformers.activations import ACT2FN, NewGELUActivation

from lmrecipes.models.mini_gpt import (
    MiniGPTConfig,
    MiniGPTForCausalLM,
    MiniGPTForSequenceClassification,
    MiniGPTModel,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB_SIZE = 120
PAD_ID, BOS_ID = 0, 1  # no eos in most tests, so every generation runs for exactly max_new_tokens


def tiny_config(**overrides) -> MiniGPTConfig:
    values = {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 64,
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "embedding_dropout": 0.0,
        # Wider than GPT-2's 0.02 so that a random model's next-token choice depends strongly on its context:
        # a bug in masks, positions or the cache then changes the generated tokens, not just the 7th decimal.
        "initializer_range": 0.3,
        "pad_token_id": PAD_ID,
        "bos_token_id": BOS_ID,
        "num_labels": 3,
    }
    return MiniGPTConfig(**(values | overrides))


def tiny_lm(seed: int = 0, **overrides) -> MiniGPTForCausalLM:
    torch.manual_seed(seed)
    return MiniGPTForCausalLM(tiny_config(**overrides)).eval()


def token_ids(batch_size: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """Ids that avoid the special tokens, so no position is padding by accident."""
    return torch.randint(2, VOCAB_SIZE, (batch_size, seq_len), generator=torch.Generator().manual_seed(seed))


def left_padded(lengths: list[int], seq_len: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    input_ids = token_ids(len(lengths), seq_len, seed)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        attention_mask[row, seq_len - length :] = 1
    return input_ids.masked_fill(attention_mask == 0, PAD_ID), attention_mask


# ----------------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "hidden_size"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"hidden_size": -32}, "hidden_size"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"num_attention_heads": 0}, "num_attention_heads"),
        ({"intermediate_size": 0}, "intermediate_size"),
        ({"max_position_embeddings": 0}, "max_position_embeddings"),
        ({"hidden_dropout": 1.0}, "hidden_dropout"),
        ({"attention_dropout": -0.1}, "attention_dropout"),
        ({"embedding_dropout": 1.5}, "embedding_dropout"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
        ({"hidden_act": "not_an_activation"}, "hidden_act"),
        ({"pad_token_id": VOCAB_SIZE}, "pad_token_id"),
        ({"bos_token_id": VOCAB_SIZE + 5}, "bos_token_id"),
        ({"eos_token_id": [2, VOCAB_SIZE]}, "eos_token_id"),
        ({"pad_token_id": -1}, "pad_token_id"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_config(**overrides)


def test_config_defaults_and_round_trip(tmp_path):
    config = tiny_config(hidden_size=48, num_attention_heads=6)
    assert config.model_type == "mini_gpt"
    assert config.intermediate_size == 4 * 48  # GPT-2's default MLP width
    assert config.tie_word_embeddings and not config.add_cross_attention
    assert config._attn_implementation is None  # the model picks sdpa
    config.save_pretrained(tmp_path)
    reloaded = MiniGPTConfig.from_pretrained(tmp_path)
    assert reloaded.to_dict() == config.to_dict()
    assert MiniGPTConfig(eos_token_id=[1, 2], vocab_size=10).eos_token_id == [1, 2]


# ----------------------------------------------------------------------------------------------------------------------
# Same architecture as GPT-2
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("add_cross_attention", [False, True])
def test_parameter_count_equals_gpt2(add_cross_attention):
    sizes = {"vocab_size": VOCAB_SIZE, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4}
    mini = MiniGPTForCausalLM(
        MiniGPTConfig(
            **sizes, intermediate_size=80, max_position_embeddings=40, add_cross_attention=add_cross_attention
        )
    )
    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=VOCAB_SIZE,
            n_embd=32,
            n_layer=3,
            n_head=4,
            n_inner=80,
            n_positions=40,
            add_cross_attention=add_cross_attention,
        )
    )
    assert mini.num_parameters() == gpt2.num_parameters()
    # The LM head is tied to the token embedding, as in GPT-2.
    assert mini.lm_head.weight.data_ptr() == mini.model.wte.weight.data_ptr()
    assert mini.get_input_embeddings() is mini.model.wte and mini.get_output_embeddings() is mini.lm_head


def test_untied_head_has_its_own_weight():
    model = tiny_lm(tie_word_embeddings=False)
    assert model.lm_head.weight.data_ptr() != model.model.wte.weight.data_ptr()
    assert model.num_parameters() == tiny_lm().num_parameters() + VOCAB_SIZE * 32


def test_residual_projections_use_gpt2_scaled_init():
    torch.manual_seed(0)
    config = tiny_config(num_hidden_layers=8, hidden_size=64, initializer_range=0.02)
    model = MiniGPTForCausalLM(config)
    block = model.model.h[0]
    expected_residual_std = 0.02 / (2 * 8) ** 0.5
    assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert block.attn.c_proj.weight.std().item() == pytest.approx(expected_residual_std, rel=0.1)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(expected_residual_std, rel=0.1)
    assert torch.equal(block.ln_1.weight, torch.ones(64)) and not block.attn.c_attn.bias.any()


@pytest.mark.parametrize("activation", ["gelu", "relu2", "silu"])
def test_other_activations_run_as_acts2fn_defines_them(activation):
    assert type(tiny_lm(hidden_act=activation).model.h[0].mlp.act) is type(ACT2FN[activation])


def test_gelu_new_runs_the_fused_kernel_with_the_same_loss_and_gradients():
    """GPT-2's activation, "gelu_new", runs as PyTorch's fused tanh-GELU: the same loss and gradients as transformers'
    eight-operation NewGELUActivation, within fp32 rounding."""
    input_ids = token_ids(2, 16)
    results = []
    for activation in ("fused", "gelu_new written out"):
        model = tiny_lm().train()
        assert model.config.hidden_act == "gelu_new"  # the default: GPT-2's
        assert isinstance(model.model.h[0].mlp.act, type(ACT2FN["gelu_pytorch_tanh"]))
        if activation != "fused":
            for block in model.model.h:
                block.mlp.act = NewGELUActivation()
        loss = model(input_ids, labels=input_ids).loss
        loss.backward()
        results.append((loss, {name: p.grad for name, p in model.named_parameters()}))
    (fused_loss, fused_grads), (plain_loss, plain_grads) = results
    torch.testing.assert_close(fused_loss, plain_loss)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, msg=name)
    assert any(grad.abs().max() > 1e-3 for grad in plain_grads.values())


# ----------------------------------------------------------------------------------------------------------------------
# Attention implementations, padding, positions
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("add_cross_attention", [False, True])
def test_sdpa_equals_eager_on_a_padded_batch(add_cross_attention):
    sdpa = tiny_lm(add_cross_attention=add_cross_attention)
    assert sdpa.config._attn_implementation == "sdpa"  # the default
    eager = MiniGPTForCausalLM(
        tiny_config(add_cross_attention=add_cross_attention, attn_implementation="eager")
    )
    eager.load_state_dict(sdpa.state_dict())
    eager.eval()
    assert eager.config._attn_implementation == "eager"

    input_ids, attention_mask = left_padded([9, 5, 2], 9)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if add_cross_attention:
        encoder_mask = torch.ones(3, 6, dtype=torch.long)
        encoder_mask[1, 4:] = 0
        inputs |= {"encoder_hidden_states": torch.randn(3, 6, 32), "encoder_attention_mask": encoder_mask}
    with torch.no_grad():
        sdpa_logits = sdpa(**inputs).logits
        eager_logits = eager(**inputs).logits
    real = attention_mask.bool()
    torch.testing.assert_close(sdpa_logits[real], eager_logits[real], atol=1e-5, rtol=1e-4)


def test_left_padded_batch_equals_each_example_alone_at_real_positions():
    model = tiny_lm()
    lengths, seq_len = [8, 5, 1], 8
    input_ids, attention_mask = left_padded(lengths, seq_len)
    with torch.no_grad():
        batched = model(input_ids, attention_mask=attention_mask).logits
        for row, length in enumerate(lengths):
            alone = model(input_ids[row : row + 1, seq_len - length :]).logits
            torch.testing.assert_close(batched[row, seq_len - length :], alone[0], atol=1e-5, rtol=1e-4)


def test_positions_are_counted_from_the_first_real_token():
    """Without explicit position_ids the model counts real tokens, so explicit positions must give the same result."""
    model = tiny_lm()
    input_ids, attention_mask = left_padded([6, 3], 6)
    explicit_positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        implicit = model(input_ids, attention_mask=attention_mask).logits
        explicit = model(input_ids, attention_mask=attention_mask, position_ids=explicit_positions).logits
        naive = model(input_ids, attention_mask=attention_mask, position_ids=torch.arange(6)[None]).logits
    torch.testing.assert_close(implicit, explicit, rtol=0, atol=0)
    assert not torch.allclose(implicit[1, 3:], naive[1, 3:], atol=1e-3), "positions had no effect"


# ----------------------------------------------------------------------------------------------------------------------
# KV cache and generate()
# ----------------------------------------------------------------------------------------------------------------------


def test_incremental_decoding_with_cache_equals_full_forward():
    model = tiny_lm()
    input_ids, attention_mask = left_padded([10, 6], 10)
    prefix = 4
    with torch.no_grad():
        full = model(input_ids, attention_mask=attention_mask).logits
        out = model(input_ids[:, :prefix], attention_mask=attention_mask[:, :prefix], use_cache=True)
        cache = out.cache
        for step in range(prefix, 10):
            out = model(
                input_ids[:, step : step + 1],
                attention_mask=attention_mask[:, : step + 1],
                cache=cache,
                use_cache=True,
            )
            assert out.cache is cache and cache.get_seq_length() == step + 1
            torch.testing.assert_close(out.logits[:, -1], full[:, step], atol=1e-5, rtol=1e-4)


def test_greedy_with_cache_equals_without():
    model = tiny_lm()
    prompt = token_ids(2, 5)
    kwargs = {
        "max_new_tokens": 10,
        "do_sample": False,
        "return_dict_in_generate": True,
        "output_logits": True,
    }
    cached = model.generate(prompt, use_cache=True, **kwargs)
    uncached = model.generate(prompt, use_cache=False, **kwargs)
    assert cached.sequences.shape == (2, 15)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(torch.stack(cached.logits), torch.stack(uncached.logits), atol=1e-5, rtol=1e-4)
    assert len(set(cached.sequences[0, 5:].tolist())) > 1, "degenerate generation would make this test weak"


def test_batched_left_padded_greedy_equals_one_prompt_at_a_time():
    model = tiny_lm()
    lengths, seq_len = [7, 4, 2], 7
    input_ids, attention_mask = left_padded(lengths, seq_len)
    kwargs = {"max_new_tokens": 8, "do_sample": False, "return_dict_in_generate": True, "output_logits": True}
    batched = model.generate(input_ids, attention_mask=attention_mask, **kwargs)
    for row, length in enumerate(lengths):
        alone = model.generate(input_ids[row : row + 1, seq_len - length :], **kwargs)
        assert torch.equal(batched.sequences[row, seq_len:], alone.sequences[0, length:])
        torch.testing.assert_close(
            torch.stack(batched.logits)[:, row], torch.stack(alone.logits)[:, 0], atol=1e-5, rtol=1e-4
        )


def test_beam_search_scores_match_a_fresh_forward_pass():
    """The returned beam scores are the log-probabilities a cache-free forward pass assigns to the returned tokens,
    which only holds if the cache was reordered correctly at every step."""
    model = tiny_lm()
    input_ids, attention_mask = left_padded([5, 3], 5)
    new_tokens = 6
    out = model.generate(
        input_ids,
        attention_mask=attention_mask,
        max_new_tokens=new_tokens,
        num_beams=3,
        num_return_sequences=2,
        length_penalty=0.0,  # sequence score = plain sum of token log-probabilities
        do_sample=False,
        return_dict_in_generate=True,
        output_scores=True,
    )
    assert out.sequences.shape == (4, 5 + new_tokens)
    mask = torch.cat(
        [attention_mask.repeat_interleave(2, dim=0), torch.ones(4, new_tokens, dtype=torch.long)], 1
    )
    with torch.no_grad():
        log_probs = model(out.sequences, attention_mask=mask).logits.log_softmax(-1)
    generated = out.sequences[:, 5:]
    token_log_probs = log_probs[:, 4:-1].gather(-1, generated[..., None]).squeeze(-1)
    torch.testing.assert_close(out.sequences_scores, token_log_probs.sum(-1), atol=1e-4, rtol=1e-4)


def test_sampling_is_reproducible_with_a_seed():
    model = tiny_lm()
    prompt = token_ids(2, 4)
    kwargs = {"max_new_tokens": 6, "do_sample": True, "top_k": 20, "temperature": 1.5}
    torch.manual_seed(3)
    first = model.generate(prompt, **kwargs)
    torch.manual_seed(3)
    assert torch.equal(first, model.generate(prompt, **kwargs))


def test_input_longer_than_max_positions_is_rejected():
    model = tiny_lm(max_position_embeddings=8)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(token_ids(1, 9))


# ----------------------------------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------------------------------


def test_causal_lm_loss_shifts_labels_and_ignores_minus_100():
    model = tiny_lm()
    input_ids = token_ids(2, 9)
    labels = input_ids.clone()
    labels[0, 3:6] = -100
    out = model(input_ids, labels=labels)
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, VOCAB_SIZE), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("side", ["left", "right"])
def test_sequence_classification_pools_the_last_real_token(side):
    torch.manual_seed(0)
    model = MiniGPTForSequenceClassification(tiny_config()).eval()
    lengths, seq_len = [7, 3], 7
    input_ids, attention_mask = left_padded(lengths, seq_len)
    if side == "right":
        input_ids, attention_mask = input_ids.flip(-1), attention_mask.flip(-1)
    with torch.no_grad():
        batched = model(input_ids, attention_mask=attention_mask).logits
        # Without a mask, the pad_token_id tells where the padding is.
        from_pad_id = model(input_ids).logits if side == "right" else batched
        for row in range(2):
            real = input_ids[row][attention_mask[row].bool()]
            alone = model(real[None]).logits[0]
            torch.testing.assert_close(batched[row], alone, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(from_pad_id[row], alone, atol=1e-5, rtol=1e-4)
    assert batched.shape == (2, 3)


@pytest.mark.parametrize(
    "num_labels,labels,problem_type",
    [
        (3, torch.tensor([0, 2]), "single_label_classification"),
        (1, torch.tensor([0.5, -1.0]), "regression"),
        (3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), "multi_label_classification"),
    ],
)
def test_sequence_classification_loss_follows_problem_type(num_labels, labels, problem_type):
    torch.manual_seed(0)
    model = MiniGPTForSequenceClassification(tiny_config(num_labels=num_labels)).eval()
    out = model(token_ids(2, 6), labels=labels)
    assert model.config.problem_type == problem_type
    functional = torch.nn.functional
    expected = {
        "single_label_classification": lambda: functional.cross_entropy(out.logits, labels),
        "regression": lambda: functional.mse_loss(out.logits.squeeze(), labels),
        "multi_label_classification": lambda: functional.binary_cross_entropy_with_logits(out.logits, labels),
    }[problem_type]()
    torch.testing.assert_close(out.loss, expected)


def test_base_model_returns_hidden_states_and_attentions():
    torch.manual_seed(0)
    model = MiniGPTModel(tiny_config(attn_implementation="eager")).eval()
    out = model(token_ids(2, 5), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2  # embeddings + one per block
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert out.attentions[0].shape == (2, 4, 5, 5)
    assert torch.all(out.attentions[0].triu(diagonal=1) == 0), "attention is not causal"
    as_tuple = model(token_ids(2, 5), return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], out.last_hidden_state)


# ----------------------------------------------------------------------------------------------------------------------
# Cross-attention: mini_gpt as the decoder of an EncoderDecoderModel
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def registered_mini_gpt():
    """EncoderDecoderModel resolves the decoder through the Auto classes (lmrecipes registers them on import too)."""
    AutoConfig.register("mini_gpt", MiniGPTConfig, exist_ok=True)
    AutoModelForCausalLM.register(MiniGPTConfig, MiniGPTForCausalLM, exist_ok=True)


def tiny_bert_encoder(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertModel(config, add_pooling_layer=False)


def tiny_encoder_decoder() -> EncoderDecoderModel:
    decoder = tiny_lm(seed=1, add_cross_attention=True)
    model = EncoderDecoderModel(encoder=tiny_bert_encoder(), decoder=decoder)
    model.config.decoder_start_token_id = BOS_ID
    model.config.pad_token_id = PAD_ID
    return model


def source_batch() -> tuple[torch.Tensor, torch.Tensor]:
    source = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(5))
    source_mask = torch.ones_like(source)
    source_mask[1, 4:] = 0
    return source, source_mask


def test_encoder_decoder_trains_on_a_loss():
    model = tiny_encoder_decoder().train()
    assert model.decoder.config.add_cross_attention
    source, source_mask = source_batch()
    labels = token_ids(2, 6, seed=2)
    labels[1, 4:] = -100
    out = model(input_ids=source, attention_mask=source_mask, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits.reshape(-1, VOCAB_SIZE), labels.reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    cross_attention = model.decoder.model.h[0].cross_attn
    assert cross_attention.kv_attn.weight.grad.any() and cross_attention.q_attn.weight.grad.any()
    assert model.encoder.embeddings.word_embeddings.weight.grad.any(), "no gradient reached the encoder"


def test_encoder_decoder_generation_with_cache_equals_without():
    model = tiny_encoder_decoder().eval()
    source, source_mask = source_batch()
    kwargs = {"max_new_tokens": 6, "do_sample": False, "return_dict_in_generate": True, "output_logits": True}
    cached = model.generate(source, attention_mask=source_mask, use_cache=True, **kwargs)
    uncached = model.generate(source, attention_mask=source_mask, use_cache=False, **kwargs)
    assert isinstance(cached.cache, EncoderDecoderCache)
    assert cached.cache.cross_attention_cache.get_seq_length() == source.shape[1]
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(torch.stack(cached.logits), torch.stack(uncached.logits), atol=1e-5, rtol=1e-4)
    # The encoder's padding is respected: changing a padded source token changes nothing.
    altered = source.clone()
    altered[1, 5] = 50 if source[1, 5] != 50 else 51
    again = model.generate(altered, attention_mask=source_mask, **kwargs)
    torch.testing.assert_close(torch.stack(again.logits), torch.stack(cached.logits), atol=1e-5, rtol=1e-4)

    beams = model.generate(source, attention_mask=source_mask, max_new_tokens=5, num_beams=2)
    assert beams.shape == (2, 6) and (beams[:, 0] == BOS_ID).all()


def test_from_encoder_decoder_pretrained_adds_cross_attention(tmp_path):
    tiny_bert_encoder().save_pretrained(tmp_path / "encoder")
    decoder = tiny_lm(seed=1)
    assert not hasattr(decoder.model.h[0], "cross_attn")
    decoder.save_pretrained(tmp_path / "decoder")

    model = EncoderDecoderModel.from_encoder_decoder_pretrained(tmp_path / "encoder", tmp_path / "decoder")
    assert model.decoder.config.add_cross_attention and model.decoder.config.is_decoder
    assert hasattr(model.decoder.model.h[0], "cross_attn")
    # The pretrained decoder weights were loaded, only the cross-attention is new.
    torch.testing.assert_close(model.decoder.model.wte.weight, decoder.model.wte.weight, rtol=0, atol=0)

    model.config.decoder_start_token_id = BOS_ID
    model.config.pad_token_id = PAD_ID
    source, source_mask = source_batch()
    out = model(input_ids=source, attention_mask=source_mask, labels=token_ids(2, 5))
    assert torch.isfinite(out.loss)

    model.save_pretrained(tmp_path / "encoder_decoder")
    reloaded = EncoderDecoderModel.from_pretrained(tmp_path / "encoder_decoder")
    assert type(reloaded.decoder) is MiniGPTForCausalLM and reloaded.decoder.config.add_cross_attention


def test_encoder_states_without_cross_attention_are_rejected():
    model = tiny_lm()
    with pytest.raises(ValueError, match="add_cross_attention"):
        model(token_ids(1, 4), encoder_hidden_states=torch.randn(1, 3, 32))


# ----------------------------------------------------------------------------------------------------------------------
# Gradient checkpointing
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("add_cross_attention", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(add_cross_attention):
    input_ids, attention_mask = left_padded([8, 5], 8)
    encoder_states = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(1))
    grads, attention_calls = [], []
    for checkpointing in (False, True):
        model = tiny_lm(add_cross_attention=add_cross_attention).train()
        if checkpointing:
            model.activation_checkpointing_enable()
        calls = []
        # A pre-hook: torch stops the recomputation as soon as the saved tensors are rebuilt, before the block returns.
        model.model.h[0].attn.register_forward_pre_hook(lambda *_, calls=calls: calls.append(1))
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": input_ids}
        states = encoder_states.clone().requires_grad_(True)
        if add_cross_attention:
            inputs["encoder_hidden_states"] = states
        model(**inputs).loss.backward()
        attention_calls.append(len(calls))
        grads.append({name: p.grad for name, p in model.named_parameters()} | {"encoder_states": states.grad})
    assert attention_calls == [1, 2], "checkpointing did not recompute the block in the backward pass"
    for name, grad in grads[0].items():
        if grad is None:
            assert grads[1][name] is None, name
        else:
            torch.testing.assert_close(grads[1][name], grad, msg=name)
    if add_cross_attention:
        assert grads[1]["encoder_states"].any()


# ----------------------------------------------------------------------------------------------------------------------
# The adaptive softmax head (recipes/mini_gpt/wikitext2.yaml) through the whole conformance suite
# ----------------------------------------------------------------------------------------------------------------------

ADAPTIVE_SOFTMAX = {"adaptive_softmax_cutoffs": [20, 50], "tie_word_embeddings": False}


test_the_adaptive_softmax_head_passes_the_conformance_suite = test_modeling_common.conformance_variant(
    MiniGPTForCausalLM, ADAPTIVE_SOFTMAX
)

# nanoGPT's activation, which recipes/mini_gpt/shakespeare_char.yaml sets.
test_the_exact_gelu_passes_the_conformance_suite = test_modeling_common.conformance_variant(
    MiniGPTForCausalLM, {"hidden_act": "gelu"}
)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            {"adaptive_softmax_cutoffs": [10, 30]},
            "MiniGPTConfig.adaptive_softmax_cutoffs needs tie_word_embeddings",
        ),
        ({"adaptive_softmax_cutoffs": [30, 10], "tie_word_embeddings": False}, "increasing"),
        ({"adaptive_softmax_cutoffs": [10, VOCAB_SIZE], "tie_word_embeddings": False}, "increasing"),
        (
            {
                "adaptive_softmax_cutoffs": [10, 30],
                "tie_word_embeddings": False,
                "adaptive_softmax_div_value": 1,
            },
            "> 1",
        ),
    ],
)
def test_adaptive_softmax_config_is_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)
