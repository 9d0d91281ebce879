"""Behaviour specific to the lstm_lm family: the recurrent state, padding, tying and pooling.

The generic interface checks (save/load, remote code, Trainer, pipelines) live in the conformance suite.
"""

from __future__ import annotations

import pytest
import test_modeling_common
import torch
from transformers import DynamicCache

from lmrecipes.models.lstm_lm import (
    LSTMLMConfig,
    LSTMLMForCausalLM,
    LSTMLMForSequenceClassification,
    LSTMLMModel,
)
from lmrecipes.models.lstm_lm.modeling_lstm_lm import LSTMLMCache

VOCAB_SIZE, PAD_ID, BOS_ID = 101, 0, 1
GREEDY = {"do_sample": False, "pad_token_id": PAD_ID, "eos_token_id": None}


def make_config(**overrides) -> LSTMLMConfig:
    values = {
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
        "num_labels": 3,
    }
    return LSTMLMConfig(**(values | overrides))


def make_model(model_class=LSTMLMForCausalLM, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return model_class(make_config(**overrides)).eval()


def token_ids(batch_size: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """Ids that avoid the special tokens, so that no position is padding by accident."""
    return torch.randint(2, VOCAB_SIZE, (batch_size, seq_len), generator=torch.Generator().manual_seed(seed))


def padded_batch(lengths: list[int], seq_len: int, side: str, seed: int = 3):
    input_ids = token_ids(len(lengths), seq_len, seed)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        attention_mask[row, real_slice(length, seq_len, side)] = 1
    return input_ids.masked_fill(attention_mask == 0, PAD_ID), attention_mask


def real_slice(length: int, seq_len: int, side: str) -> slice:
    return slice(0, length) if side == "right" else slice(seq_len - length, seq_len)


# ----------------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value",
    [
        ("vocab_size", 0),
        ("embedding_size", -4),
        ("hidden_size", 0),
        ("num_hidden_layers", 0),
        ("hidden_size", 32.0),
        ("embedding_dropout", -0.1),
        ("hidden_dropout", 1.0),
        ("output_dropout", 1.5),
        ("pad_token_id", VOCAB_SIZE),
        ("bos_token_id", VOCAB_SIZE + 5),
        ("eos_token_id", [BOS_ID, VOCAB_SIZE]),
        ("pad_token_id", -1),
        ("classifier_pooling", "max"),
        ("initializer_range", 0.0),
    ],
)
def test_config_rejects_bad_value_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        make_config(**{field: value})


@pytest.mark.parametrize("std", [1.0, 0.05])
def test_the_embedding_and_its_tied_output_matrix_start_at_initializer_range(std):
    torch.manual_seed(0)
    model = LSTMLMForCausalLM(make_config(vocab_size=2000, initializer_range=std))
    assert model.model.embed_tokens.weight.std().item() == pytest.approx(std, rel=0.05)
    assert model.get_output_embeddings().weight is model.model.embed_tokens.weight


def test_config_is_rechecked_before_saving(tmp_path):
    config = make_config()
    config.output_dropout = 1.0
    with pytest.raises(ValueError, match="output_dropout"):
        config.save_pretrained(tmp_path)


def test_config_round_trips_through_save_and_load(tmp_path):
    config = make_config(classifier_pooling="mean", tie_word_embeddings=False, hidden_dropout=0.25)
    config.save_pretrained(tmp_path)
    reloaded = LSTMLMConfig.from_pretrained(tmp_path)
    assert reloaded.model_type == "lstm_lm"
    for field in (
        "embedding_size",
        "hidden_size",
        "classifier_pooling",
        "tie_word_embeddings",
        "hidden_dropout",
    ):
        assert getattr(reloaded, field) == getattr(config, field), field


# ----------------------------------------------------------------------------------------------------------------------
# Recurrent state
# ----------------------------------------------------------------------------------------------------------------------


def test_state_carried_across_chunks_equals_one_pass():
    model = make_model()
    input_ids = token_ids(2, 14)
    with torch.no_grad():
        whole = model(input_ids).logits
        first = model(input_ids[:, :6], use_cache=True)
        second = model(input_ids[:, 6:], cache=first.cache)
    assert isinstance(first.cache, LSTMLMCache)
    assert second.cache.get_seq_length() == 14
    torch.testing.assert_close(torch.cat([first.logits, second.logits], dim=1), whole, atol=1e-5, rtol=1e-4)


def test_truncated_bptt_detaches_the_carried_state():
    model = make_model().train()
    input_ids = token_ids(2, 12)
    first = model(input_ids[:, :6], labels=input_ids[:, :6], use_cache=True)
    first.loss.backward()
    cache = first.cache
    # Without detaching, the second backward would run into the first chunk's freed graph.
    second = model(input_ids[:, 6:], labels=input_ids[:, 6:], cache=cache.detach_())
    second.loss.backward()
    hidden_state, cell_state = cache.get_lstm_state()
    assert hidden_state.shape == cell_state.shape == (2, 2, 32)


def test_state_is_not_changed_by_padding_or_by_an_all_padding_chunk():
    model = make_model(LSTMLMModel)
    input_ids, attention_mask = padded_batch([8, 5], 8, "right")
    with torch.no_grad():
        batched = model(input_ids, attention_mask=attention_mask, use_cache=True).cache
        alone = model(input_ids[1:, :5], use_cache=True).cache
        batched_state, alone_state = batched.get_lstm_state(), alone.get_lstm_state()
        for batched_tensor, alone_tensor in zip(batched_state, alone_state, strict=True):
            torch.testing.assert_close(batched_tensor[:, 1], alone_tensor[:, 0], atol=1e-5, rtol=1e-4)

        # A chunk in which row 1 is all padding leaves row 1's state as it was.
        before = [t.clone() for t in batched.get_lstm_state()]
        model(token_ids(2, 3), attention_mask=torch.tensor([[1, 1, 1], [0, 0, 0]]), cache=batched)
        after = batched.get_lstm_state()
    for before_tensor, after_tensor in zip(before, after, strict=True):
        torch.testing.assert_close(after_tensor[:, 1], before_tensor[:, 1], rtol=0, atol=0)
        assert not torch.allclose(after_tensor[:, 0], before_tensor[:, 0])


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batch_matches_each_example_alone(side):
    model = make_model(LSTMLMForCausalLM)
    seq_len, lengths = 10, [10, 6, 1]
    input_ids, attention_mask = padded_batch(lengths, seq_len, side)
    with torch.no_grad():
        batched = model(input_ids, attention_mask=attention_mask).logits
        for row, length in enumerate(lengths):
            real = real_slice(length, seq_len, side)
            alone = model(input_ids[row : row + 1, real]).logits
            torch.testing.assert_close(batched[row, real], alone[0], atol=1e-5, rtol=1e-4)


def test_padding_in_the_middle_is_skipped_too():
    model = make_model(LSTMLMModel)
    input_ids = token_ids(1, 7)
    attention_mask = torch.tensor([[1, 1, 0, 0, 1, 1, 1]])
    with torch.no_grad():
        with_gap = model(input_ids, attention_mask=attention_mask).last_hidden_state
        without_gap = model(input_ids[:, [0, 1, 4, 5, 6]]).last_hidden_state
    torch.testing.assert_close(with_gap[0, [0, 1, 4, 5, 6]], without_gap[0], atol=1e-5, rtol=1e-4)
    assert with_gap[0, 2:4].abs().max() == 0


def test_cache_rejects_a_foreign_cache_and_a_wrong_batch_size():
    model = make_model()
    with pytest.raises(TypeError, match="LSTMLMCache"):
        model(token_ids(1, 3), cache=DynamicCache())
    cache = model(token_ids(2, 3), use_cache=True).cache
    with pytest.raises(ValueError, match="batch size"):
        model(token_ids(3, 3), cache=cache)


# ----------------------------------------------------------------------------------------------------------------------
# generate()
# ----------------------------------------------------------------------------------------------------------------------


def test_generate_feeds_only_the_new_token_after_the_prompt():
    model = make_model()
    fed_lengths = []
    model.model.register_forward_pre_hook(
        lambda module, args, kwargs: fed_lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    model.generate(token_ids(2, 7), max_new_tokens=5, **GREEDY)
    assert fed_lengths == [7, 1, 1, 1, 1]


def test_greedy_with_cache_equals_without():
    model = make_model()
    prompt = token_ids(3, 5)
    with_cache = model.generate(prompt, max_new_tokens=12, use_cache=True, **GREEDY)
    without_cache = model.generate(prompt, max_new_tokens=12, use_cache=False, **GREEDY)
    assert with_cache.shape == (3, 17)
    torch.testing.assert_close(with_cache, without_cache, rtol=0, atol=0)


def test_beam_search_with_cache_equals_without():
    model = make_model()
    prompt = token_ids(2, 4)
    kwargs = GREEDY | {"max_new_tokens": 7, "num_beams": 4, "num_return_sequences": 2}
    with_cache = model.generate(prompt, use_cache=True, **kwargs)
    without_cache = model.generate(prompt, use_cache=False, **kwargs)
    assert with_cache.shape == (4, 11)
    torch.testing.assert_close(with_cache, without_cache, rtol=0, atol=0)


def test_batched_left_padded_greedy_equals_each_prompt_alone():
    model = make_model()
    lengths = [7, 4, 2]
    input_ids, attention_mask = padded_batch(lengths, 7, "left")
    batched = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=8, **GREEDY)
    for row, length in enumerate(lengths):
        alone = model.generate(input_ids[row : row + 1, 7 - length :], max_new_tokens=8, **GREEDY)
        torch.testing.assert_close(batched[row, 7:], alone[0, length:], rtol=0, atol=0)


def test_generation_resumes_from_a_returned_cache():
    model = make_model()
    prompt = token_ids(2, 5)
    in_one_go = model.generate(prompt, max_new_tokens=8, **GREEDY)
    first = model.generate(prompt, max_new_tokens=4, return_dict_in_generate=True, **GREEDY)
    resumed = model.generate(first.sequences, cache=first.cache, max_new_tokens=4, **GREEDY)
    torch.testing.assert_close(resumed, in_one_go, rtol=0, atol=0)


def test_generate_from_inputs_embeds_equals_from_ids():
    model = make_model()
    prompt = token_ids(2, 5)
    from_ids = model.generate(prompt, max_new_tokens=6, **GREEDY)
    from_embeds = model.generate(
        inputs_embeds=model.get_input_embeddings()(prompt), max_new_tokens=6, **GREEDY
    )
    torch.testing.assert_close(from_embeds, from_ids[:, 5:], rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------------------
# Tied embeddings
# ----------------------------------------------------------------------------------------------------------------------


def test_tied_head_with_projection_shares_storage_and_survives_save_and_load(tmp_path):
    model = make_model(embedding_size=24, hidden_size=32, tie_word_embeddings=True)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert (model.output_projection.in_features, model.output_projection.out_features) == (32, 24)
    input_ids = token_ids(2, 6)
    with torch.no_grad():
        expected = model(input_ids).logits

    model.save_pretrained(tmp_path)
    from safetensors import safe_open

    with safe_open(tmp_path / "model.safetensors", "pt") as saved:
        assert "model.embed_tokens.weight" in saved.keys() and "lm_head.weight" not in saved.keys()

    reloaded = LSTMLMForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids).logits, expected, rtol=0, atol=0)
        # Still one tensor after loading: an update of the embeddings shows up in the output layer.
        reloaded.model.embed_tokens.weight[5].add_(1.0)
    assert torch.equal(reloaded.lm_head.weight[5], reloaded.model.embed_tokens.weight[5])


def test_untied_head_has_its_own_weights_and_no_projection():
    model = make_model(embedding_size=24, hidden_size=32, tie_word_embeddings=False)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    assert model.lm_head.in_features == 32
    assert not any(name.startswith("output_projection") for name, _ in model.named_parameters())


# ----------------------------------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------------------------------


def test_causal_lm_loss_shifts_labels_ignores_minus_100_and_takes_num_items_in_batch():
    model = make_model()
    input_ids = token_ids(2, 9)
    labels = input_ids.clone()
    labels[0, 3:6] = -100
    outputs = model(input_ids, labels=labels)
    logits, targets = outputs.logits[:, :-1].reshape(-1, VOCAB_SIZE), labels[:, 1:].reshape(-1)
    torch.testing.assert_close(outputs.loss, torch.nn.functional.cross_entropy(logits, targets))
    # With the token count of the whole (accumulated) batch, as the Trainer passes it, the loss is a sum over it.
    summed = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    torch.testing.assert_close(model(input_ids, labels=labels, num_items_in_batch=40).loss, summed / 40)


# ----------------------------------------------------------------------------------------------------------------------
# Sequence classification
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_classification_pooling_ignores_padding(pooling, side):
    model = make_model(LSTMLMForSequenceClassification, classifier_pooling=pooling)
    lengths = [9, 5, 2]
    input_ids, attention_mask = padded_batch(lengths, 9, side)
    with torch.no_grad():
        batched = model(input_ids, attention_mask=attention_mask).logits
        # Without a mask the pad_token_id marks the padding.
        from_pad_ids = model(input_ids).logits
        for row, length in enumerate(lengths):
            alone = model(input_ids[row : row + 1, real_slice(length, 9, side)]).logits
            torch.testing.assert_close(batched[row], alone[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(from_pad_ids, batched, rtol=0, atol=0)


def test_classification_pools_the_last_token_or_the_mean():
    input_ids = token_ids(2, 6)
    logits = {}
    for pooling in ("last", "mean"):
        model = make_model(LSTMLMForSequenceClassification, classifier_pooling=pooling)
        with torch.no_grad():
            hidden = model.model(input_ids).last_hidden_state
            logits[pooling] = model(input_ids).logits
            pooled = hidden[:, -1] if pooling == "last" else hidden.mean(dim=1)
            torch.testing.assert_close(logits[pooling], model.score(pooled))
    assert not torch.allclose(logits["last"], logits["mean"])


@pytest.mark.parametrize(
    "num_labels,labels,loss_fn",
    [
        (3, torch.tensor([0, 2]), torch.nn.functional.cross_entropy),
        (
            1,
            torch.tensor([0.5, -1.5]),
            lambda logits, labels: torch.nn.functional.mse_loss(logits.squeeze(), labels),
        ),
        (
            3,
            torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
            torch.nn.functional.binary_cross_entropy_with_logits,
        ),
    ],
    ids=["single_label", "regression", "multi_label"],
)
def test_classification_loss_follows_the_problem_type(num_labels, labels, loss_fn):
    model = make_model(LSTMLMForSequenceClassification, num_labels=num_labels)
    outputs = model(token_ids(2, 5), labels=labels)
    torch.testing.assert_close(outputs.loss, loss_fn(outputs.logits, labels))


# ----------------------------------------------------------------------------------------------------------------------
# Gradient checkpointing
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left_padded"])
@pytest.mark.parametrize("use_reentrant", [False, True], ids=["non_reentrant", "reentrant"])
def test_gradient_checkpointing_recomputes_the_lstm_and_gives_the_same_gradients(use_reentrant, padded):
    # Dropout on: the recomputation must replay the same dropout masks, on the plain and on the packed path.
    input_ids, attention_mask = padded_batch([8, 5] if padded else [8, 8], 8, "left")
    dropouts = {"embedding_dropout": 0.2, "hidden_dropout": 0.2, "output_dropout": 0.2}
    gradients, lstm_calls = [], []
    for checkpointing in (False, True):
        model = make_model(**dropouts).train()
        if checkpointing:
            model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": use_reentrant}
            )
        calls = []
        # A pre-hook: the non-reentrant recomputation may stop as soon as it has what backward needs.
        model.model.lstm.register_forward_pre_hook(lambda *args, calls=calls: calls.append(1))
        torch.manual_seed(1)
        model(input_ids, attention_mask=attention_mask, labels=input_ids).loss.backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters()})
        lstm_calls.append(len(calls))
    assert lstm_calls == [1, 2], "the LSTM was not recomputed in the backward pass"
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (cuDNN LSTM)")
def test_gradient_checkpointing_replays_cudnn_dropout():
    # cuDNN keeps its own dropout state: a warm-up step leaves it advanced, as in real training.
    input_ids, attention_mask = (t.cuda() for t in padded_batch([8, 5], 8, "left"))
    gradients = []
    for checkpointing in (False, True):
        model = make_model(hidden_dropout=0.5).cuda().train()
        if checkpointing:
            model.activation_checkpointing_enable()
        torch.manual_seed(1)
        model(input_ids, attention_mask=attention_mask, labels=input_ids)
        model(input_ids, attention_mask=attention_mask, labels=input_ids).loss.backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters()})
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# The adaptive softmax head (recipes/lstm_lm/wikitext2.yaml) through the whole conformance suite
# ---------------------------------------------------------------------------------------------------------------------

ADAPTIVE_SOFTMAX = {"adaptive_softmax_cutoffs": [20, 50], "tie_word_embeddings": False}


test_the_adaptive_softmax_head_passes_the_conformance_suite = test_modeling_common.conformance_variant(
    LSTMLMForCausalLM, ADAPTIVE_SOFTMAX
)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"adaptive_softmax_cutoffs": [10, 30]}, "needs tie_word_embeddings=False"),
        ({"adaptive_softmax_cutoffs": [30, 10], "tie_word_embeddings": False}, "increasing"),
        ({"adaptive_softmax_cutoffs": [10, VOCAB_SIZE], "tie_word_embeddings": False}, "increasing"),
        (
            {"adaptive_softmax_cutoffs": [10, 20, 30], "tie_word_embeddings": False, "hidden_size": 32},
            "no width",
        ),
    ],
)
def test_adaptive_softmax_config_is_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(**overrides)
