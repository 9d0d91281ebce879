"""Family-specific tests of mini_bert: config validation, BERT equivalence (parameter count and outputs),
attention implementations, padding, token types, tied MLM decoder, head losses, gradients and checkpointing.

The generic conformance suite (save/load, remote code, pipelines, Trainer) lives elsewhere; these tests pin down
what is particular to a BERT-style encoder. Sizes are tiny so the file runs in seconds on CPU.
"""

import re

import pytest
import test_modeling_common
import torch
import transformers
from safetensors import safe_open
from torch.nn import functional as F

from lmrecipes.models.mini_bert import (
    MiniBertConfig,
    MiniBertForMaskedLM,
    MiniBertForQuestionAnswering,
    MiniBertForSequenceClassification,
    MiniBertForTokenClassification,
    MiniBertModel,
)

SIZES = dict(
    vocab_size=97,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    type_vocab_size=2,
)
PAD = 0


def tiny_config(**overrides) -> MiniBertConfig:
    return MiniBertConfig(**{**SIZES, **overrides})


def padded_batch(lengths=(5, 9, 12), seed=0):
    """Right-padded random ids (never the pad id inside an example), mask and segment ids (second half = B)."""
    generator = torch.Generator().manual_seed(seed)
    max_len = max(lengths)
    input_ids = torch.full((len(lengths), max_len), PAD, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    token_type_ids = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = torch.randint(1, SIZES["vocab_size"], (length,), generator=generator)
        attention_mask[row, :length] = 1
        token_type_ids[row, length // 2 : length] = 1
    return input_ids, attention_mask, token_type_ids


def count_parameters(model: torch.nn.Module) -> int:
    # `parameters()` yields a tied parameter once, as it is stored once.
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(hidden_size=30), "hidden_size"),  # not a multiple of 4 heads
        (dict(vocab_size=0), "vocab_size"),
        (dict(hidden_size=-32), "hidden_size"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(num_attention_heads=0), "num_attention_heads"),
        (dict(intermediate_size=0), "intermediate_size"),
        (dict(max_position_embeddings=0), "max_position_embeddings"),
        (dict(type_vocab_size=0), "type_vocab_size"),
        (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob"),
        (dict(attention_probs_dropout_prob=-0.1), "attention_probs_dropout_prob"),
        (dict(classifier_dropout=1.5), "classifier_dropout"),
        (dict(pad_token_id=SIZES["vocab_size"]), "pad_token_id"),
        (dict(pad_token_id=-1), "pad_token_id"),
        (dict(hidden_act="not_an_activation"), "hidden_act"),
        (dict(layer_norm_eps=0.0), "layer_norm_eps"),
        (dict(classifier_pooling="max"), "classifier_pooling"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        tiny_config(**overrides)


def test_config_defaults_and_round_trip(tmp_path):
    assert MiniBertConfig.model_type == "mini_bert"
    config = tiny_config(num_labels=3, classifier_dropout=0.2)
    config.save_pretrained(tmp_path)
    loaded = MiniBertConfig.from_pretrained(tmp_path)
    assert loaded.model_type == "mini_bert"
    assert (loaded.hidden_size, loaded.num_labels, loaded.classifier_dropout) == (32, 3, 0.2)
    # Loading re-validates: a hand-edited config.json with a bad value fails before any model is built.
    bad = loaded.to_dict() | {"num_attention_heads": 5}
    with pytest.raises(ValueError, match="num_attention_heads"):
        MiniBertConfig.from_dict(bad)


# --------------------------------------------------------------------------------------------------------------------
# Same architecture as BERT
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mini_class", "bert_class"),
    [
        (MiniBertModel, transformers.BertModel),
        (MiniBertForMaskedLM, transformers.BertForMaskedLM),
        (MiniBertForSequenceClassification, transformers.BertForSequenceClassification),
        (MiniBertForQuestionAnswering, transformers.BertForQuestionAnswering),
        (MiniBertForTokenClassification, transformers.BertForTokenClassification),
    ],
)
def test_parameter_count_equals_bert(mini_class, bert_class):
    mini = mini_class(tiny_config())
    bert = bert_class(transformers.BertConfig(**SIZES))
    assert count_parameters(mini) == count_parameters(bert)


# BERT parameter name -> mini_bert parameter name, applied in order.
BERT_TO_MINI = [
    (r"^bert\.", "model."),
    (r"encoder\.layer\.", "layers."),
    (r"embeddings\.LayerNorm", "embeddings.layer_norm"),
    (r"attention\.self\.", "attention."),
    (r"attention\.output\.dense", "attention.output"),
    (r"attention\.output\.LayerNorm", "attention_norm"),
    (r"intermediate\.dense", "mlp.up_proj"),
    (r"\.output\.dense", ".mlp.down_proj"),
    (r"\.output\.LayerNorm", ".mlp_norm"),
    (r"^cls\.predictions\.transform\.dense", "lm_head.dense"),
    (r"^cls\.predictions\.transform\.LayerNorm", "lm_head.layer_norm"),
    (r"^cls\.predictions\.decoder", "lm_head.decoder"),
    (r"^cls\.predictions\.bias", "lm_head.decoder.bias"),
]


def bert_state_dict_from_mini(bert: torch.nn.Module, mini: torch.nn.Module) -> dict:
    mini_state = mini.state_dict()
    state = {}
    for name in bert.state_dict():
        mini_name = name
        for pattern, replacement in BERT_TO_MINI:
            mini_name = re.sub(pattern, replacement, mini_name)
        state[name] = mini_state[mini_name]
    return state


def test_outputs_equal_bert_with_the_same_weights():
    """Copy mini_bert's weights into transformers' BERT: every output must match, so the two are one architecture."""
    torch.manual_seed(0)
    input_ids, attention_mask, token_type_ids = padded_batch()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    bert_config = transformers.BertConfig(**SIZES)

    mini_mlm = MiniBertForMaskedLM(tiny_config()).eval()
    bert_mlm = transformers.BertForMaskedLM(bert_config).eval()
    bert_mlm.load_state_dict(bert_state_dict_from_mini(bert_mlm, mini_mlm))
    torch.testing.assert_close(mini_mlm(**inputs).logits, bert_mlm(**inputs).logits)

    mini_base = MiniBertModel(tiny_config()).eval()
    bert_base = transformers.BertModel(bert_config).eval()
    bert_base.load_state_dict(bert_state_dict_from_mini(bert_base, mini_base))
    mini_out, bert_out = mini_base(**inputs), bert_base(**inputs)
    torch.testing.assert_close(mini_out.last_hidden_state, bert_out.last_hidden_state)
    torch.testing.assert_close(mini_out.pooler_output, bert_out.pooler_output)


def test_initialisation_follows_bert():
    torch.manual_seed(0)
    model = MiniBertForMaskedLM(tiny_config(initializer_range=0.05))
    word_embeddings = model.get_input_embeddings().weight
    assert (
        word_embeddings[PAD].abs().sum() == 0
    )  # the padding row starts (and stays, see padding_idx) at zero
    assert abs(word_embeddings[1:].std().item() - 0.05) < 0.005
    assert abs(model.model.layers[0].mlp.up_proj.weight.std().item() - 0.05) < 0.005
    assert model.model.layers[0].mlp.up_proj.bias.abs().sum() == 0
    assert model.lm_head.decoder.bias.abs().sum() == 0
    norm = model.model.layers[1].mlp_norm
    assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and norm.bias.abs().sum() == 0


# --------------------------------------------------------------------------------------------------------------------
# Attention implementations, padding, token types
# --------------------------------------------------------------------------------------------------------------------


def test_sdpa_is_default_and_equals_eager_on_a_padded_batch():
    torch.manual_seed(0)
    model = MiniBertForMaskedLM(tiny_config()).eval()
    assert model.config._attn_implementation == "sdpa"
    input_ids, attention_mask, token_type_ids = padded_batch()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)

    sdpa_logits = model(**inputs).logits
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    eager = model(**inputs, output_attentions=True, output_hidden_states=True)

    torch.testing.assert_close(sdpa_logits, eager.logits, atol=1e-5, rtol=1e-5)
    # The mask really reaches the attention: no probability goes to a padding key.
    assert len(eager.attentions) == SIZES["num_hidden_layers"]
    for probabilities in eager.attentions:
        assert probabilities.shape == (3, SIZES["num_attention_heads"], 12, 12)
        key_is_padding = (attention_mask == 0)[:, None, None, :].expand_as(probabilities)
        assert probabilities[key_is_padding].abs().max() == 0
    # Hidden states: the embedding output plus one per block, the last one is what the head reads.
    assert len(eager.hidden_states) == SIZES["num_hidden_layers"] + 1


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_padded_batch_equals_each_example_alone(attn_implementation):
    torch.manual_seed(0)
    model = MiniBertModel(tiny_config(attn_implementation=attn_implementation)).eval()
    assert model.config._attn_implementation == attn_implementation
    input_ids, attention_mask, token_type_ids = padded_batch()
    batched = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)

    for row in range(input_ids.shape[0]):
        length = int(attention_mask[row].sum())
        alone = model(
            input_ids=input_ids[row : row + 1, :length], token_type_ids=token_type_ids[row : row + 1, :length]
        )
        torch.testing.assert_close(batched.last_hidden_state[row, :length], alone.last_hidden_state[0])
        torch.testing.assert_close(batched.pooler_output[row], alone.pooler_output[0])

    # Without the mask the padding leaks into the real tokens: the comparison above is not vacuous.
    unmasked = model(input_ids=input_ids, token_type_ids=token_type_ids).last_hidden_state
    assert not torch.allclose(unmasked[0, :5], batched.last_hidden_state[0, :5], atol=1e-4)


def test_token_type_ids_change_the_output():
    torch.manual_seed(0)
    model = MiniBertModel(tiny_config()).eval()
    input_ids, attention_mask, token_type_ids = padded_batch()
    default = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    zeros = model(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
    ).last_hidden_state
    segments = model(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
    ).last_hidden_state

    torch.testing.assert_close(default, zeros)  # omitted token types mean "all segment A"
    real = attention_mask.bool()
    assert (segments - zeros)[real].abs().amax(dim=-1).min() > 1e-4  # every real token sees the change


def test_inputs_embeds_equal_input_ids_and_bad_inputs_raise():
    torch.manual_seed(0)
    model = MiniBertModel(tiny_config()).eval()
    input_ids, attention_mask, _ = padded_batch()
    from_ids = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    embeds = model.get_input_embeddings()(input_ids)
    from_embeds = model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
    torch.testing.assert_close(from_ids, from_embeds)

    with pytest.raises(ValueError, match="exactly one of `input_ids` or `inputs_embeds`"):
        model(attention_mask=attention_mask)
    with pytest.raises(ValueError, match="exactly one of `input_ids` or `inputs_embeds`"):
        model(input_ids=input_ids, inputs_embeds=embeds)
    too_long = torch.ones((1, SIZES["max_position_embeddings"] + 1), dtype=torch.long)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=too_long)


def test_return_dict_false_gives_tuples():
    torch.manual_seed(0)
    model = MiniBertForMaskedLM(tiny_config()).eval()
    input_ids, attention_mask, _ = padded_batch()
    as_dict = model(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids)
    as_tuple = model(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)


# --------------------------------------------------------------------------------------------------------------------
# Masked LM: tied decoder, loss
# --------------------------------------------------------------------------------------------------------------------


def test_tied_mlm_decoder_shares_storage_and_survives_save_load(tmp_path):
    torch.manual_seed(0)
    model = MiniBertForMaskedLM(tiny_config()).eval()
    embeddings = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is embeddings
    assert model.lm_head.decoder.weight.data_ptr() == embeddings.data_ptr()

    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", framework="pt") as checkpoint:
        saved = set(checkpoint.keys())
    assert "model.embeddings.word_embeddings.weight" in saved
    assert "lm_head.decoder.weight" not in saved  # stored once
    assert "lm_head.decoder.bias" in saved

    loaded = MiniBertForMaskedLM.from_pretrained(tmp_path).eval()
    loaded_embeddings = loaded.get_input_embeddings().weight
    assert loaded.lm_head.decoder.weight.data_ptr() == loaded_embeddings.data_ptr()
    input_ids, attention_mask, _ = padded_batch()
    torch.testing.assert_close(
        loaded(input_ids=input_ids, attention_mask=attention_mask).logits,
        model(input_ids=input_ids, attention_mask=attention_mask).logits,
    )
    with torch.no_grad():  # a change to the embedding is a change to the decoder
        loaded_embeddings[5].add_(1.0)
    torch.testing.assert_close(loaded.lm_head.decoder.weight[5], loaded_embeddings[5])


def test_untied_mlm_decoder_is_a_separate_parameter():
    tied = MiniBertForMaskedLM(tiny_config())
    untied = MiniBertForMaskedLM(tiny_config(tie_word_embeddings=False))
    assert untied.lm_head.decoder.weight.data_ptr() != untied.get_input_embeddings().weight.data_ptr()
    assert count_parameters(untied) - count_parameters(tied) == SIZES["vocab_size"] * SIZES["hidden_size"]


def test_mlm_loss_is_cross_entropy_over_labelled_positions_only():
    torch.manual_seed(0)
    model = MiniBertForMaskedLM(tiny_config()).eval()
    input_ids, attention_mask, _ = padded_batch()
    labels = torch.full_like(input_ids, -100)
    labels[0, 1], labels[1, 3], labels[2, 7] = 11, 22, 33
    output = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    labelled = labels != -100
    expected = F.cross_entropy(output.logits[labelled], labels[labelled])
    torch.testing.assert_close(output.loss, expected)


# --------------------------------------------------------------------------------------------------------------------
# Fine-tuning heads
# --------------------------------------------------------------------------------------------------------------------


def test_question_answering_loss_is_mean_of_start_and_end_cross_entropy():
    torch.manual_seed(0)
    model = MiniBertForQuestionAnswering(tiny_config()).eval()
    input_ids, attention_mask, token_type_ids = padded_batch()
    seq_len = input_ids.shape[1]
    # Out-of-range positions are clamped to seq_len and ignored, as in BERT.
    start_positions = torch.tensor([1, 4, 100])
    end_positions = torch.tensor([2, 100, 5])
    output = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=token_type_ids,
        start_positions=start_positions,
        end_positions=end_positions,
    )
    assert isinstance(output, transformers.modeling_outputs.QuestionAnsweringModelOutput)
    assert output.start_logits.shape == output.end_logits.shape == (3, seq_len)
    start_loss = F.cross_entropy(output.start_logits[[0, 1]], start_positions[[0, 1]])
    end_loss = F.cross_entropy(output.end_logits[[0, 2]], end_positions[[0, 2]])
    torch.testing.assert_close(output.loss, (start_loss + end_loss) / 2)


@pytest.mark.parametrize(
    ("num_labels", "labels", "problem_type"),
    [
        (3, torch.tensor([0, 2, 1]), "single_label_classification"),
        (1, torch.tensor([0.5, -1.0, 2.0]), "regression"),
        (3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]), "multi_label_classification"),
    ],
)
def test_sequence_classification_loss_follows_problem_type(num_labels, labels, problem_type):
    torch.manual_seed(0)
    model = MiniBertForSequenceClassification(tiny_config(num_labels=num_labels)).eval()
    input_ids, attention_mask, token_type_ids = padded_batch()
    output = model(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels
    )
    assert model.config.problem_type == problem_type
    logits = output.logits
    assert logits.shape == (3, num_labels)
    if problem_type == "single_label_classification":
        expected = F.cross_entropy(logits, labels)
    elif problem_type == "regression":
        expected = F.mse_loss(logits.squeeze(-1), labels)
    else:
        expected = F.binary_cross_entropy_with_logits(logits, labels)
    torch.testing.assert_close(output.loss, expected)


def test_token_classification_loss_ignores_minus_100():
    torch.manual_seed(0)
    model = MiniBertForTokenClassification(tiny_config(num_labels=5)).eval()
    input_ids, attention_mask, _ = padded_batch()
    labels = torch.randint(0, 5, input_ids.shape)
    labels[attention_mask == 0] = -100
    output = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    real = attention_mask.bool()
    torch.testing.assert_close(output.loss, F.cross_entropy(output.logits[real], labels[real]))


def test_pooler_only_where_it_is_used():
    assert MiniBertModel(tiny_config()).pooler is not None
    assert MiniBertModel(tiny_config(), add_pooling_layer=False).pooler is None
    assert MiniBertForSequenceClassification(tiny_config()).model.pooler is not None
    for head in (MiniBertForMaskedLM, MiniBertForQuestionAnswering, MiniBertForTokenClassification):
        assert head(tiny_config()).model.pooler is None


def _loss_of(model: torch.nn.Module, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    if isinstance(model, MiniBertForQuestionAnswering):
        return model(
            **inputs, start_positions=torch.tensor([1, 2, 3]), end_positions=torch.tensor([2, 4, 6])
        ).loss
    if isinstance(model, MiniBertForSequenceClassification):
        return model(**inputs, labels=torch.tensor([0, 1, 0])).loss
    if isinstance(model, MiniBertModel):
        output = model(**inputs)
        return output.last_hidden_state.pow(2).mean() + output.pooler_output.pow(2).mean()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    if isinstance(model, MiniBertForTokenClassification):
        labels = labels.masked_fill(attention_mask == 1, 1)
    return model(**inputs, labels=labels).loss


@pytest.mark.parametrize(
    "model_class",
    [
        MiniBertModel,
        MiniBertForMaskedLM,
        MiniBertForSequenceClassification,
        MiniBertForQuestionAnswering,
        MiniBertForTokenClassification,
    ],
)
def test_every_parameter_receives_a_gradient(model_class):
    torch.manual_seed(0)
    model = model_class(tiny_config()).train()
    _loss_of(model, *padded_batch()).backward()
    without_gradient = [
        name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0
    ]
    assert without_gradient == []


# --------------------------------------------------------------------------------------------------------------------
# Gradient checkpointing
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients(use_reentrant):
    torch.manual_seed(0)
    # No dropout, so the recomputed forward is the same function as the first one.
    model = MiniBertForMaskedLM(
        tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ).train()
    batch = padded_batch()

    mlp_calls = []
    model.model.layers[0].mlp.register_forward_hook(lambda *_: mlp_calls.append(1))

    def gradients() -> dict:
        model.zero_grad()
        mlp_calls.clear()
        _loss_of(model, *batch).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    reference = gradients()
    assert len(mlp_calls) == 1

    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    assert model.is_activation_checkpointing
    checkpointed = gradients()
    assert len(mlp_calls) == 2  # the block really was recomputed during backward

    assert reference.keys() == checkpointed.keys()
    for name in reference:
        torch.testing.assert_close(checkpointed[name], reference[name], msg=name)


# --------------------------------------------------------------------------------------------------------------------
# As the encoder of an EncoderDecoderModel
# --------------------------------------------------------------------------------------------------------------------


def test_works_as_encoder_of_encoder_decoder_model(tmp_path):
    # `import lmrecipes` (done by the import above) registers mini_bert with the Auto classes, which
    # EncoderDecoderConfig needs to rebuild the encoder config from its model_type.
    torch.manual_seed(0)
    encoder = MiniBertModel(tiny_config())
    decoder_config = transformers.BertConfig(**SIZES, is_decoder=True, add_cross_attention=True)
    decoder = transformers.BertLMHeadModel(decoder_config)
    model = transformers.EncoderDecoderModel(encoder=encoder, decoder=decoder)
    model.config.decoder_start_token_id = 2
    model.config.pad_token_id = PAD

    input_ids, attention_mask, _ = padded_batch()
    labels = torch.randint(1, SIZES["vocab_size"], (3, 6))
    output = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    model.eval()
    torch.testing.assert_close(
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).encoder_last_hidden_state,
        encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
    )
    output.loss.backward()
    assert encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0  # the loss reaches the encoder

    model.save_pretrained(tmp_path)
    reloaded = transformers.EncoderDecoderModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded.encoder, MiniBertModel)
    torch.testing.assert_close(
        reloaded(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits,
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Sparse prediction (recipes/mini_bert/*_mlm.yaml): the MLM head only at the labelled positions
# ----------------------------------------------------------------------------------------------------------------------


test_sparse_prediction_passes_the_conformance_suite = test_modeling_common.conformance_variant(
    MiniBertForMaskedLM, {"sparse_prediction": True}
)


def test_sparse_prediction_gives_the_dense_loss_and_gradients_from_the_labelled_positions_only():
    input_ids, attention_mask, _ = padded_batch()
    labels = torch.full_like(input_ids, -100)
    labels[0, 1], labels[1, 3], labels[2, 7] = 5, 6, 7
    losses, gradients, logits = [], [], []
    for sparse in (False, True):
        torch.manual_seed(0)
        model = MiniBertForMaskedLM(tiny_config(sparse_prediction=sparse))
        output = model(input_ids, attention_mask=attention_mask, labels=labels)
        output.loss.backward()
        losses.append(output.loss)
        logits.append(output.logits)
        gradients.append({name: p.grad for name, p in model.named_parameters()})
    assert logits[0].shape == (*input_ids.shape, SIZES["vocab_size"])
    assert logits[1].shape == (3, SIZES["vocab_size"])  # one row per labelled position
    torch.testing.assert_close(logits[1], logits[0][labels != -100])
    torch.testing.assert_close(losses[1], losses[0])
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, msg=name)


# ----------------------------------------------------------------------------------------------------------------------
# Mean pooling (classifier_pooling="mean", set by a classification recipe): the sentence vector is the mean of the real
# tokens' hidden states
# ----------------------------------------------------------------------------------------------------------------------


test_mean_pooling_passes_the_conformance_suite = test_modeling_common.conformance_variant(
    MiniBertForSequenceClassification, {"classifier_pooling": "mean"}
)


def test_mean_pooling_averages_the_real_tokens_and_ignores_the_padding():
    torch.manual_seed(0)
    model = MiniBertModel(tiny_config(classifier_pooling="mean")).eval()
    input_ids, attention_mask, token_type_ids = padded_batch()
    output = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)

    for row in range(input_ids.shape[0]):
        length = int(attention_mask[row].sum())
        mean = output.last_hidden_state[row, :length].mean(dim=0)
        torch.testing.assert_close(output.pooler_output[row], torch.tanh(model.pooler.dense(mean)))
        alone = model(
            input_ids=input_ids[row : row + 1, :length], token_type_ids=token_type_ids[row : row + 1, :length]
        )
        torch.testing.assert_close(output.pooler_output[row], alone.pooler_output[0])

    # The first token's vector is another one: the option changes what the classifier reads.
    cls_model = MiniBertModel(tiny_config()).eval()
    cls_model.load_state_dict(model.state_dict())
    cls_output = cls_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    torch.testing.assert_close(cls_output.last_hidden_state, output.last_hidden_state)
    assert not torch.allclose(cls_output.pooler_output, output.pooler_output, atol=1e-4)

    # A 4D mask says nothing about which tokens are real: mean pooling refuses it rather than guessing.
    four_d = attention_mask[:, None, None, :].expand(-1, 1, input_ids.shape[1], -1).bool()
    with pytest.raises(ValueError, match="needs the 2D"):
        model(input_ids=input_ids, attention_mask=four_d)
