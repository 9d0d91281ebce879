"""transformers pipelines run on tiny random models with a real tokenizer, and agree with the model itself."""

from __future__ import annotations

import pytest
import torch
from model_specs import TINY_CONFIGS
from transformers import pipeline

from lmrecipes.models.lstm_lm import LSTMLMForCausalLM, LSTMLMForSequenceClassification
from lmrecipes.models.mini_bert import (
    MiniBertForMaskedLM,
    MiniBertForSequenceClassification,
    MiniBertForTokenClassification,
)
from lmrecipes.models.mini_gpt import MiniGPTForCausalLM, MiniGPTForSequenceClassification

WORDPIECE_HEADS = {MiniBertForMaskedLM, MiniBertForSequenceClassification, MiniBertForTokenClassification}


def model_for(model_class, tokenizer, **overrides):
    family = {"LSTMLM": "lstm_lm", "MiniBert": "mini_bert", "MiniGPT": "mini_gpt"}
    family = next(v for k, v in family.items() if model_class.__name__.startswith(k))
    special = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if family != "mini_bert":
        special |= {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    torch.manual_seed(0)
    return model_class(TINY_CONFIGS[family](**special, **overrides)).eval()


@pytest.fixture
def tokenizer_for(byte_bpe_tokenizer, wordpiece_tokenizer):
    return lambda model_class: wordpiece_tokenizer if model_class in WORDPIECE_HEADS else byte_bpe_tokenizer


@pytest.mark.parametrize("model_class", [LSTMLMForCausalLM, MiniGPTForCausalLM], ids=lambda c: c.__name__)
def test_text_generation_pipeline_matches_generate(model_class, byte_bpe_tokenizer):
    model = model_for(model_class, byte_bpe_tokenizer)
    generator = pipeline("text-generation", model=model, tokenizer=byte_bpe_tokenizer, device="cpu")
    prompt = "the cat sat on"
    text = generator(prompt, max_new_tokens=6, do_sample=False)[0]["generated_text"]

    input_ids = byte_bpe_tokenizer(prompt, return_tensors="pt").input_ids
    tokens = model.generate(
        input_ids, max_new_tokens=6, do_sample=False, pad_token_id=byte_bpe_tokenizer.pad_token_id
    )
    assert text == byte_bpe_tokenizer.decode(tokens[0], skip_special_tokens=True)
    assert text.startswith(prompt) and len(text) > len(prompt)


def test_fill_mask_pipeline_ranks_by_model_logits(wordpiece_tokenizer):
    model = model_for(MiniBertForMaskedLM, wordpiece_tokenizer)
    fill_mask = pipeline("fill-mask", model=model, tokenizer=wordpiece_tokenizer, device="cpu")
    text = f"the cat {wordpiece_tokenizer.mask_token} on the mat."
    predictions = fill_mask(text, top_k=3)
    assert len(predictions) == 3

    encoded = wordpiece_tokenizer(text, return_tensors="pt")
    mask_index = (encoded.input_ids[0] == wordpiece_tokenizer.mask_token_id).nonzero().item()
    with torch.no_grad():
        probs = model(**encoded).logits[0, mask_index].softmax(-1)
    top = probs.topk(3)
    assert [p["token"] for p in predictions] == top.indices.tolist()
    torch.testing.assert_close(
        torch.tensor([p["score"] for p in predictions]), top.values, atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize(
    "model_class",
    [LSTMLMForSequenceClassification, MiniBertForSequenceClassification, MiniGPTForSequenceClassification],
    ids=lambda c: c.__name__,
)
def test_text_classification_pipeline_matches_model(model_class, tokenizer_for):
    tokenizer = tokenizer_for(model_class)
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    model = model_for(model_class, tokenizer, id2label=labels, label2id={v: k for k, v in labels.items()})
    classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu", top_k=None)
    texts = ["a great film with a good story.", "boring."]
    results = classifier(texts)

    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        probs = model(**encoded).logits.softmax(-1)
    for result, row in zip(results, probs, strict=True):
        scores = {entry["label"]: entry["score"] for entry in result}
        assert set(scores) == set(labels.values())
        torch.testing.assert_close(
            torch.tensor([scores[labels[i]] for i in range(3)]), row, atol=1e-5, rtol=1e-4
        )


def test_token_classification_pipeline_matches_model(wordpiece_tokenizer):
    labels = {0: "O", 1: "ANIMAL", 2: "PLACE"}
    model = model_for(
        MiniBertForTokenClassification,
        wordpiece_tokenizer,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    tagger = pipeline("token-classification", model=model, tokenizer=wordpiece_tokenizer, device="cpu")
    text = "the cat sat in the garden"
    entities = tagger(text)

    encoded = wordpiece_tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        probs = model(**encoded).logits[0].softmax(-1)
    tokens = wordpiece_tokenizer.convert_ids_to_tokens(encoded.input_ids[0])
    expected = [
        (tokens[i], labels[int(p.argmax())])
        for i, p in enumerate(probs)
        if int(p.argmax()) != 0 and 0 < i < len(tokens) - 1
    ]
    assert [(e["word"], e["entity"]) for e in entities] == expected
