"""The "seq2seq-translation" pipeline on tiny random encoder-decoders, checked against `generate` itself."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_SIZES
from transformers import EncoderDecoderModel, pipeline

from lmrecipes.models.mini_bert import MiniBertConfig, MiniBertModel
from lmrecipes.models.mini_gpt import MiniGPTConfig, MiniGPTForCausalLM
from lmrecipes.pipelines import register_pipelines
from lmrecipes.pipelines.translation import TRANSLATION_TASK, Seq2SeqTranslationPipeline
from lmrecipes.translation.modeling import DECODER_TOKENIZER_FOLDER

register_pipelines()  # idempotent; `import lmrecipes` does it too (test_registration.py)

SOURCE_TEXTS = ["the cat sat on the mat.", "a happy dog ran to the big house in the garden."]


def encoder_decoder(source_tokenizer, target_tokenizer) -> EncoderDecoderModel:
    """A mini_bert encoder over the source vocabulary and a mini_gpt decoder with cross-attention over the target."""
    torch.manual_seed(0)
    encoder = MiniBertModel(
        MiniBertConfig(
            vocab_size=len(source_tokenizer),
            max_position_embeddings=64,
            pad_token_id=source_tokenizer.pad_token_id,
            **TINY_SIZES,
        )
    )
    decoder = MiniGPTForCausalLM(
        MiniGPTConfig(
            vocab_size=len(target_tokenizer),
            max_position_embeddings=64,
            add_cross_attention=True,
            is_decoder=True,
            pad_token_id=target_tokenizer.pad_token_id,
            bos_token_id=target_tokenizer.bos_token_id,
            eos_token_id=target_tokenizer.eos_token_id,
            **TINY_SIZES,
        )
    )
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder).eval()
    model.config.decoder_start_token_id = target_tokenizer.bos_token_id
    model.config.pad_token_id = target_tokenizer.pad_token_id
    return model


def reference_translation(model, source_tokenizer, target_tokenizer, text: str, **generate_kwargs) -> str:
    encoded = source_tokenizer(text, return_tensors="pt")
    output_ids = model.generate(
        input_ids=encoded.input_ids,
        attention_mask=encoded.attention_mask,
        pad_token_id=target_tokenizer.pad_token_id,
        **generate_kwargs,
    )
    return target_tokenizer.decode(output_ids[0], skip_special_tokens=True)


# min_new_tokens: the random decoder would otherwise end the text at once (eos is its favourite first token).
GENERATION_SETTINGS = [
    {"max_new_tokens": 6, "min_new_tokens": 4, "do_sample": False},
    {"max_new_tokens": 7, "min_new_tokens": 4, "num_beams": 3, "do_sample": False},
]


@pytest.mark.parametrize("generate_kwargs", GENERATION_SETTINGS, ids=["greedy", "beam-search"])
def test_translation_with_a_shared_tokenizer_equals_generate(byte_bpe_tokenizer, generate_kwargs):
    model = encoder_decoder(byte_bpe_tokenizer, byte_bpe_tokenizer)
    translate = pipeline(TRANSLATION_TASK, model=model, tokenizer=byte_bpe_tokenizer, device="cpu")
    assert isinstance(translate, Seq2SeqTranslationPipeline)
    for text in SOURCE_TEXTS:
        expected = reference_translation(
            model, byte_bpe_tokenizer, byte_bpe_tokenizer, text, **generate_kwargs
        )
        assert expected  # something was generated
        assert translate(text, **generate_kwargs) == [{"translation_text": expected}]


@pytest.mark.parametrize("generate_kwargs", GENERATION_SETTINGS, ids=["greedy", "beam-search"])
def test_translation_decodes_with_the_target_tokenizer(
    wordpiece_tokenizer, byte_bpe_tokenizer, generate_kwargs
):
    model = encoder_decoder(wordpiece_tokenizer, byte_bpe_tokenizer)
    translate = pipeline(
        TRANSLATION_TASK,
        model=model,
        tokenizer=wordpiece_tokenizer,
        decoder_tokenizer=byte_bpe_tokenizer,
        device="cpu",
        **generate_kwargs,  # generation parameters given at construction apply to every call
    )
    expected = [
        reference_translation(model, wordpiece_tokenizer, byte_bpe_tokenizer, text, **generate_kwargs)
        for text in SOURCE_TEXTS
    ]
    assert all(expected)
    assert translate(SOURCE_TEXTS) == [{"translation_text": text} for text in expected]
    # Batched texts are padded by the source tokenizer; the results stay those of one text at a time.
    assert translate(SOURCE_TEXTS, batch_size=2) == [{"translation_text": text} for text in expected]


def test_translation_returns_every_sequence_asked_for(byte_bpe_tokenizer):
    model = encoder_decoder(byte_bpe_tokenizer, byte_bpe_tokenizer)
    translate = pipeline(TRANSLATION_TASK, model=model, tokenizer=byte_bpe_tokenizer, device="cpu")
    encoded = byte_bpe_tokenizer(SOURCE_TEXTS[0], return_tensors="pt")
    kwargs = {"max_new_tokens": 5, "min_new_tokens": 3, "num_beams": 3, "num_return_sequences": 2}
    output_ids = model.generate(**encoded, pad_token_id=byte_bpe_tokenizer.pad_token_id, **kwargs)
    expected = byte_bpe_tokenizer.batch_decode(output_ids, skip_special_tokens=True)

    assert translate(SOURCE_TEXTS[0], **kwargs) == [{"translation_text": text} for text in expected]
    both = translate(SOURCE_TEXTS, **kwargs)
    assert len(both) == 2 and all(len(sequences) == 2 for sequences in both)


def test_translation_pipeline_round_trips_through_save_pretrained(
    wordpiece_tokenizer, byte_bpe_tokenizer, tmp_path
):
    model = encoder_decoder(wordpiece_tokenizer, byte_bpe_tokenizer)
    translate = pipeline(
        TRANSLATION_TASK,
        model=model,
        tokenizer=wordpiece_tokenizer,
        decoder_tokenizer=byte_bpe_tokenizer,
        device="cpu",
    )
    expected = translate(SOURCE_TEXTS, max_new_tokens=6, min_new_tokens=4)
    assert all(result["translation_text"] for result in expected)

    translate.save_pretrained(tmp_path)
    assert (tmp_path / DECODER_TOKENIZER_FOLDER / "tokenizer.json").is_file()
    reloaded = pipeline(TRANSLATION_TASK, model=str(tmp_path), device="cpu")
    assert reloaded.tokenizer.get_vocab() == wordpiece_tokenizer.get_vocab()
    assert reloaded.decoder_tokenizer.get_vocab() == byte_bpe_tokenizer.get_vocab()
    assert reloaded(SOURCE_TEXTS, max_new_tokens=6, min_new_tokens=4) == expected


def test_translation_refuses_a_decoder_only_model(byte_bpe_tokenizer):
    torch.manual_seed(0)
    decoder_only = MiniGPTForCausalLM(MiniGPTConfig(vocab_size=len(byte_bpe_tokenizer), **TINY_SIZES))
    with pytest.raises(ValueError, match="encoder-decoder"):
        Seq2SeqTranslationPipeline(model=decoder_only, tokenizer=byte_bpe_tokenizer, device="cpu")
