"""The custom "extractive-question-answering" and "seq2seq-translation" pipelines, on tiny random models with the
real tokenizers of the recipes, checked against what the model itself computes."""

from __future__ import annotations

import importlib
import json
import logging

import pytest
import torch
from conftest import WORDS, tiny_corpus
from transformers import EncoderDecoderModel, pipeline
from transformers.pipelines import PIPELINE_REGISTRY, check_task

import lmrecipes
from lmrecipes.models.mini_bert import MiniBertConfig, MiniBertForQuestionAnswering, MiniBertModel
from lmrecipes.models.mini_gpt import MiniGPTConfig, MiniGPTForCausalLM
from lmrecipes.pipelines import (
    DECODER_TOKENIZER_FOLDER,
    N_BEST_SIZE,
    QUESTION_ANSWERING_TASK,
    TRANSLATION_TASK,
    ExtractiveQuestionAnsweringPipeline,
    Seq2SeqTranslationPipeline,
    register_pipelines,
)

register_pipelines()  # idempotent; `import lmrecipes` does it too (checked below)

SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37}
QUESTION = "the cat sat on what"
SHORT_CONTEXT = "the dog sat on a mat."
MAX_ANSWER_LEN = 30


def qa_model(tokenizer, seed: int = 0) -> MiniBertForQuestionAnswering:
    torch.manual_seed(seed)
    config = MiniBertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
        **SIZES,
    )
    return MiniBertForQuestionAnswering(config).eval()


def qa_pipeline(model, tokenizer, **kwargs) -> ExtractiveQuestionAnsweringPipeline:
    return pipeline(QUESTION_ANSWERING_TASK, model=model, tokenizer=tokenizer, device="cpu", **kwargs)


def all_valid_spans(tokenizer, model, question: str, context: str) -> list[tuple[float, int, int]]:
    """(start + end logit, start char, end char) of every span of context tokens, best first, by brute force."""
    encoded = tokenizer(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoded.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        outputs = model(**encoded)
    start_logits, end_logits = outputs.start_logits[0], outputs.end_logits[0]
    context_tokens = [i for i, sequence_id in enumerate(encoded.sequence_ids(0)) if sequence_id == 1]
    spans = [
        (float(start_logits[start] + end_logits[end]), offsets[start][0], offsets[end][1])
        for start in context_tokens
        for end in context_tokens
        if start <= end < start + MAX_ANSWER_LEN
    ]
    return sorted(spans, key=lambda span: span[0], reverse=True)


def assert_same_answers(answers: list[dict], expected: list[dict]) -> None:
    """Same spans in the same order; scores equal up to float noise (batching, reloading)."""
    assert [(a["answer"], a["start"], a["end"]) for a in answers] == [
        (e["answer"], e["start"], e["end"]) for e in expected
    ]
    assert [a["score"] for a in answers] == pytest.approx([e["score"] for e in expected], rel=1e-4)


# ----------------------------------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------------------------------


def test_import_lmrecipes_registers_both_tasks():
    removed = {
        task: PIPELINE_REGISTRY.supported_tasks.pop(task)
        for task in (QUESTION_ANSWERING_TASK, TRANSLATION_TASK)
    }
    try:
        importlib.reload(lmrecipes)
        assert check_task(QUESTION_ANSWERING_TASK)[1]["impl"] is ExtractiveQuestionAnsweringPipeline
        assert check_task(TRANSLATION_TASK)[1]["impl"] is Seq2SeqTranslationPipeline
    finally:
        PIPELINE_REGISTRY.supported_tasks.update(removed)


def test_register_pipelines_twice_changes_nothing_and_warns_nothing(caplog):
    before = {
        task: PIPELINE_REGISTRY.supported_tasks[task] for task in (QUESTION_ANSWERING_TASK, TRANSLATION_TASK)
    }
    with caplog.at_level(logging.WARNING):
        register_pipelines()
    assert not [record for record in caplog.records if "already registered" in record.getMessage()]
    for task, entry in before.items():
        assert PIPELINE_REGISTRY.supported_tasks[task] is entry


# ----------------------------------------------------------------------------------------------------------------------
# Extractive question answering
# ----------------------------------------------------------------------------------------------------------------------


def test_qa_answer_is_the_best_span_of_the_model_logits(wordpiece_tokenizer):
    model = qa_model(wordpiece_tokenizer)
    num_tokens = len(wordpiece_tokenizer(QUESTION, SHORT_CONTEXT).input_ids)
    # With no more tokens than the n-best size, every token is among the n best: the pipeline's n-best search is
    # then the same as trying every span, as below.
    assert num_tokens <= N_BEST_SIZE
    expected = all_valid_spans(wordpiece_tokenizer, model, QUESTION, SHORT_CONTEXT)

    answer = qa_pipeline(model, wordpiece_tokenizer)(question=QUESTION, context=SHORT_CONTEXT)
    assert set(answer) == {"score", "start", "end", "answer"}
    assert answer["answer"] == SHORT_CONTEXT[answer["start"] : answer["end"]]
    assert (answer["start"], answer["end"]) == expected[0][1:]
    # The score is the softmax of the span's logit sum over all candidate spans (here: all spans).
    logit_sums = torch.tensor([score for score, _, _ in expected], dtype=torch.float64)
    assert answer["score"] == pytest.approx(logit_sums.softmax(0)[0].item(), rel=1e-5)


def test_qa_top_k_ranks_answers_like_the_logits(wordpiece_tokenizer):
    model = qa_model(wordpiece_tokenizer, seed=1)
    expected = all_valid_spans(wordpiece_tokenizer, model, QUESTION, SHORT_CONTEXT)

    answers = qa_pipeline(model, wordpiece_tokenizer)(question=QUESTION, context=SHORT_CONTEXT, top_k=3)
    assert [(a["start"], a["end"]) for a in answers] == [span[1:] for span in expected[:3]]
    assert [a["answer"] for a in answers] == [SHORT_CONTEXT[start:end] for _, start, end in expected[:3]]
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) < 1


def plant_answer(model: MiniBertForQuestionAnswering, token_id: int) -> None:
    """Make the start and end logits peak on `token_id`, wherever it is.

    Features 0 and 1 are cleared in every embedding table and set to +10 / -10 for the token only; the QA head
    reads feature 0 minus feature 1. The random layers (initializer_range 0.02) add little to the residual stream.
    """
    embeddings = model.model.embeddings
    with torch.no_grad():
        for table in (
            embeddings.word_embeddings,
            embeddings.position_embeddings,
            embeddings.token_type_embeddings,
        ):
            table.weight[:, :2] = 0.0
        embeddings.word_embeddings.weight[token_id, :2] = torch.tensor([10.0, -10.0])
        model.qa_outputs.weight.zero_()
        model.qa_outputs.bias.zero_()
        model.qa_outputs.weight[:, :2] = torch.tensor([1.0, -1.0])


def long_context_ending_with(sentence: str, left_out_word: str) -> str:
    """Sentences of the test corpus without `left_out_word`, then `sentence`: a few windows long."""
    filler = [line for line in tiny_corpus(40) if left_out_word not in line.split()]
    return " ".join(filler[:6] + [sentence] + filler[6:7])


def context_with_one_planted_token(tokenizer) -> tuple[str, str, int]:
    """(context, word, token id): a long context in which `word`, near the end, is the only `token id`.

    The tiny WordPiece vocabulary is trained afresh each session and may split or not know a word, so the word is
    chosen here: the first corpus word that is one known token and occurs once in the context's tokens.
    """
    for word in WORDS:
        tokens = tokenizer.tokenize(word)
        if len(tokens) != 1 or tokens[0] == tokenizer.unk_token or word in QUESTION.split():
            continue
        context = long_context_ending_with(f"the dog ran to the {word}.", word)
        token_id = tokenizer.convert_tokens_to_ids(tokens[0])
        if tokenizer(context).input_ids.count(token_id) == 1:
            return context, word, token_id
    raise AssertionError("no corpus word is a single token of the test tokenizer")


def test_qa_finds_the_answer_in_a_later_window_of_a_long_context(wordpiece_tokenizer):
    context, planted_word, token_id = context_with_one_planted_token(wordpiece_tokenizer)
    model = qa_model(wordpiece_tokenizer)
    plant_answer(model, token_id)
    max_seq_len, doc_stride = 32, 8

    answer = qa_pipeline(model, wordpiece_tokenizer)(
        question=QUESTION, context=context, max_seq_len=max_seq_len, doc_stride=doc_stride
    )
    planted_at = context.rindex(f" {planted_word}.") + 1
    assert answer["answer"] == planted_word
    assert (answer["start"], answer["end"]) == (planted_at, planted_at + len(planted_word))

    # The answer lies past the context that the first window holds.
    first_window = wordpiece_tokenizer(
        QUESTION, context, truncation="only_second", max_length=max_seq_len, return_offsets_mapping=True
    )
    last_context_token = max(i for i, s in enumerate(first_window.sequence_ids(0)) if s == 1)
    assert answer["start"] > first_window["offset_mapping"][last_context_token][1]
    assert len(wordpiece_tokenizer(QUESTION, context).input_ids) > 2 * max_seq_len


def test_qa_batches_windows_without_changing_answers(wordpiece_tokenizer):
    model = qa_model(wordpiece_tokenizer, seed=2)
    qa = qa_pipeline(model, wordpiece_tokenizer, max_seq_len=32, doc_stride=8, top_k=2)
    # The contexts have different numbers of windows and the last window of each is shorter (padded in a batch).
    examples = [
        {"question": QUESTION, "context": long_context_ending_with("the dog sat.", "mat")},
        {"question": "a big dog", "context": SHORT_CONTEXT},
        {"question": "happy actor", "context": " ".join(tiny_corpus(9))},
    ]
    one_by_one = qa(examples, batch_size=1)
    batched = qa(examples, batch_size=4)
    for single, in_batch in zip(one_by_one, batched, strict=True):
        assert_same_answers(in_batch, single)


def test_qa_accepts_the_call_forms_of_the_old_pipeline(wordpiece_tokenizer):
    qa = qa_pipeline(qa_model(wordpiece_tokenizer), wordpiece_tokenizer)
    other = "a happy actor loved the story."
    expected = qa(question=QUESTION, context=SHORT_CONTEXT)
    expected_other = qa(question=QUESTION, context=other)
    assert expected != expected_other

    assert qa(QUESTION, SHORT_CONTEXT) == expected
    assert qa({"question": QUESTION, "context": SHORT_CONTEXT}) == expected
    assert qa([{"question": QUESTION, "context": SHORT_CONTEXT}]) == [expected]
    assert qa(question=[QUESTION, QUESTION], context=[SHORT_CONTEXT, other]) == [expected, expected_other]
    assert qa(question=[QUESTION, QUESTION], context=SHORT_CONTEXT) == [expected, expected]
    assert qa(question=QUESTION, context=SHORT_CONTEXT, top_k=2)[0] == expected


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda qa: qa(question=QUESTION, context="  "), ValueError, "`context` is empty"),
        (lambda qa: qa({"question": QUESTION}), ValueError, "has no `context`"),
        (lambda qa: qa(question=[QUESTION] * 2, context=[SHORT_CONTEXT]), ValueError, "2 questions but 1"),
        (lambda qa: qa(question=QUESTION), ValueError, "needs both"),
        (lambda qa: qa(question=QUESTION, context=SHORT_CONTEXT, top_k=0), ValueError, "top_k"),
        (lambda qa: qa(question=QUESTION + " cat" * 40, context=SHORT_CONTEXT), ValueError, "tokens long"),
    ],
    ids=["empty-context", "missing-context", "unpaired-lists", "no-context", "top-k-0", "question-too-long"],
)
def test_qa_rejects_bad_input_with_a_clear_error(wordpiece_tokenizer, call, error, message):
    qa = qa_pipeline(qa_model(wordpiece_tokenizer), wordpiece_tokenizer)
    with pytest.raises(error, match=message):
        call(qa)


def test_qa_pipeline_loads_from_a_saved_folder(wordpiece_tokenizer, tmp_path):
    model = qa_model(wordpiece_tokenizer, seed=3)
    expected = qa_pipeline(model, wordpiece_tokenizer)(question=QUESTION, context=SHORT_CONTEXT, top_k=2)

    # A fine-tuned checkpoint: model and tokenizer saved side by side, as the Trainer does.
    model.save_pretrained(tmp_path / "checkpoint")
    wordpiece_tokenizer.save_pretrained(tmp_path / "checkpoint")
    from_checkpoint = pipeline(QUESTION_ANSWERING_TASK, model=str(tmp_path / "checkpoint"), device="cpu")
    assert isinstance(from_checkpoint, ExtractiveQuestionAnsweringPipeline)
    assert_same_answers(from_checkpoint(question=QUESTION, context=SHORT_CONTEXT, top_k=2), expected)

    # The pipeline's own save_pretrained writes a folder that loads the same way (no custom code needed).
    from_checkpoint.save_pretrained(tmp_path / "saved_pipeline")
    assert "custom_pipelines" not in json.loads((tmp_path / "saved_pipeline" / "config.json").read_text())
    reloaded = pipeline(QUESTION_ANSWERING_TASK, model=str(tmp_path / "saved_pipeline"), device="cpu")
    assert_same_answers(reloaded(question=QUESTION, context=SHORT_CONTEXT, top_k=2), expected)


# ----------------------------------------------------------------------------------------------------------------------
# Translation with an encoder-decoder model
# ----------------------------------------------------------------------------------------------------------------------

SOURCE_TEXTS = ["the cat sat on the mat.", "a happy dog ran to the big house in the garden."]


def encoder_decoder(source_tokenizer, target_tokenizer) -> EncoderDecoderModel:
    """A mini_bert encoder over the source vocabulary and a mini_gpt decoder with cross-attention over the target."""
    torch.manual_seed(0)
    encoder = MiniBertModel(
        MiniBertConfig(
            vocab_size=len(source_tokenizer),
            max_position_embeddings=64,
            pad_token_id=source_tokenizer.pad_token_id,
            **SIZES,
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
            **SIZES,
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
    decoder_only = MiniGPTForCausalLM(MiniGPTConfig(vocab_size=len(byte_bpe_tokenizer), **SIZES))
    with pytest.raises(ValueError, match="encoder-decoder"):
        Seq2SeqTranslationPipeline(model=decoder_only, tokenizer=byte_bpe_tokenizer, device="cpu")
