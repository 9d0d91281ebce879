"""The "extractive-question-answering" pipeline on tiny random models with the recipes' real tokenizers, checked
against what the model itself computes."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY_SIZES, WORDS, tiny_corpus
from transformers import pipeline

from lmrecipes.models.mini_bert import MiniBertConfig, MiniBertForQuestionAnswering
from lmrecipes.pipelines import register_pipelines
from lmrecipes.pipelines.question_answering import (
    QUESTION_ANSWERING_TASK,
    ExtractiveQuestionAnsweringPipeline,
)
from lmrecipes.question_answering import N_BEST_SIZE

register_pipelines()  # idempotent; `import lmrecipes` does it too (test_registration.py)

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
        **TINY_SIZES,
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
