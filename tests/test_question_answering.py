"""SQuAD pre/post-processing: windows over long contexts, span labels, n-best decoding and row checks."""

import os
from pathlib import Path

import datasets
import numpy as np
import pytest

from lmrecipes.metrics import load_metric
from lmrecipes.question_answering import (
    DROP_REASONS,
    filter_squad_examples,
    postprocess_qa_predictions,
    prepare_eval_features,
    prepare_train_features,
    rank_answer_spans,
    squad_metric_inputs,
)
from lmrecipes.tokenization import train_tokenizer

# The Hub features of rajpurkar/squad.
SQUAD_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {
            "text": datasets.List(datasets.Value("string")),
            "answer_start": datasets.List(datasets.Value("int32")),
        },
    }
)
MAX_SEQ_LENGTH = 24
DOC_STRIDE = 6


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def squad_row(example_id, question, context, answer_text, answer_start=None):
    if answer_start is None:
        answer_start = context.index(answer_text)
    return {
        "id": example_id,
        "title": "t",
        "question": question,
        "context": context,
        "answers": {"text": [answer_text], "answer_start": [answer_start]},
    }


FILLER = "the dog ran to the house in the garden with a small big blue hill and the film was good . "
# The answer sits in the middle of a long context (several windows), and at the very end of another context:
# the last context token is the edge case where a scan that is not bounded by the context runs into [SEP].
LONG_ROW = squad_row(
    "long", "the cat sat on ?", FILLER * 3 + "The cat sat near the Red Tree. " + FILLER * 3, "Red Tree"
)
END_ROW = squad_row("end", "the cat sat on ?", FILLER * 2 + "the cat sat on the blue tree", "blue tree")


def as_batch(rows):
    return {key: [row[key] for row in rows] for key in rows[0]}


def context_span(offsets):
    """First and last character of the context covered by a window (offsets None outside the context)."""
    context_offsets = [offset for offset in offsets if offset is not None]
    return context_offsets[0][0], context_offsets[-1][1]


def test_train_features_label_the_answer_in_every_window_that_holds_it(wordpiece_tokenizer):
    rows = [LONG_ROW, END_ROW]
    args = dict(tokenizer=wordpiece_tokenizer, max_seq_length=MAX_SEQ_LENGTH, doc_stride=DOC_STRIDE)
    train = prepare_train_features(as_batch(rows), **args)
    # Same tokenization, with the example ids and the offsets of the context tokens kept.
    evaluation = prepare_eval_features(as_batch(rows), **args)

    assert len(train["input_ids"]) == len(evaluation["input_ids"])
    assert all(len(ids) == MAX_SEQ_LENGTH for ids in train["input_ids"])  # padded to max_seq_length
    windows_per_example = {row["id"]: evaluation["example_id"].count(row["id"]) for row in rows}
    assert windows_per_example["long"] >= 4 and windows_per_example["end"] >= 2

    rows_by_id = {row["id"]: row for row in rows}
    labelled = {row["id"]: 0 for row in rows}
    for window, example_id in enumerate(evaluation["example_id"]):
        row = rows_by_id[example_id]
        offsets = evaluation["offset_mapping"][window]
        start, end = train["start_positions"][window], train["end_positions"][window]
        answer_start = row["answers"]["answer_start"][0]
        answer_end = answer_start + len(row["answers"]["text"][0])
        window_start, window_end = context_span(offsets)
        if window_start <= answer_start and answer_end <= window_end:
            # The answer is whole in this window: the labels map back, through the offsets, to its exact text.
            assert start != 0 and end >= start
            assert row["context"][offsets[start][0] : offsets[end][1]] == row["answers"]["text"][0]
            labelled[example_id] += 1
        else:
            assert (start, end) == (0, 0), "a window without the whole answer must point at [CLS]"
    assert labelled["long"] >= 1 and labelled["end"] >= 1


def test_windows_overlap_by_doc_stride_tokens(wordpiece_tokenizer):
    evaluation = prepare_eval_features(
        as_batch([LONG_ROW]), wordpiece_tokenizer, MAX_SEQ_LENGTH, DOC_STRIDE, pad_to_max_length=False
    )
    context_offsets = [
        [offset for offset in offsets if offset is not None] for offsets in evaluation["offset_mapping"]
    ]
    for previous, following in zip(context_offsets, context_offsets[1:], strict=False):
        assert previous[-DOC_STRIDE:] == following[:DOC_STRIDE]
    # Without padding, only the last window may be shorter than max_seq_length, and none is longer.
    lengths = [len(ids) for ids in evaluation["input_ids"]]
    assert max(lengths) == MAX_SEQ_LENGTH and all(length == MAX_SEQ_LENGTH for length in lengths[:-1])
    # The whole context is covered.
    assert context_offsets[0][0][0] == 0 and context_offsets[-1][-1][1] == len(LONG_ROW["context"].rstrip())


def test_eval_features_hide_everything_but_the_context(wordpiece_tokenizer):
    evaluation = prepare_eval_features(as_batch([LONG_ROW]), wordpiece_tokenizer, MAX_SEQ_LENGTH, DOC_STRIDE)
    for window, offsets in enumerate(evaluation["offset_mapping"]):
        sequence_ids = evaluation.sequence_ids(window)
        assert [offset is not None for offset in offsets] == [
            sequence_id == 1 for sequence_id in sequence_ids
        ]
        assert offsets[0] is None  # [CLS]
    assert set(evaluation["example_id"]) == {"long"}


def test_a_question_too_long_for_the_window_is_a_clear_error(wordpiece_tokenizer):
    long_question = squad_row("q-long", "the cat " * 12 + "?", FILLER, "garden")
    with pytest.raises(ValueError, match="question of example 'q-long' is .* tokens long"):
        prepare_train_features(as_batch([long_question]), wordpiece_tokenizer, MAX_SEQ_LENGTH, DOC_STRIDE)


def test_postprocess_returns_the_best_valid_span_over_all_windows(wordpiece_tokenizer):
    rows = [LONG_ROW, END_ROW]
    evaluation = prepare_eval_features(as_batch(rows), wordpiece_tokenizer, MAX_SEQ_LENGTH, DOC_STRIDE)
    features = datasets.Dataset.from_dict({k: evaluation[k] for k in ("example_id", "offset_mapping")})
    examples = datasets.Dataset.from_list(rows)
    offset_mappings = evaluation["offset_mapping"]

    def windows_of(example_id):
        return [
            i
            for i, window_example_id in enumerate(evaluation["example_id"])
            if window_example_id == example_id
        ]

    def context_tokens(window):
        return [i for i, offset in enumerate(offset_mappings[window]) if offset is not None]

    def token_span(window, text, context):
        """Token positions, in `window`, of the first and last token of `text` (located by character)."""
        first_char = context.index(text)
        offsets = offset_mappings[window]
        start = next(i for i in context_tokens(window) if offsets[i][0] == first_char)
        end = next(i for i in context_tokens(window) if offsets[i][1] == first_char + len(text))
        return start, end

    # Logits are low everywhere, and padded wider than the windows, as Trainer pads them across batches.
    width = MAX_SEQ_LENGTH + 5
    start_logits = np.full((len(features), width), -100.0)
    end_logits = np.full((len(features), width), -100.0)

    long_windows = windows_of("long")
    answer_window = next(
        i for i in long_windows if "Red Tree" in LONG_ROW["context"][slice(*context_span(offset_mappings[i]))]
    )
    start, end = token_span(answer_window, "Red Tree", LONG_ROW["context"])
    start_logits[answer_window, start] = end_logits[answer_window, end] = 5.0
    # Higher-scoring but invalid choices, each in another window of the example, that must be skipped:
    decoy_windows = [i for i in long_windows if i != answer_window]
    # [CLS] and question tokens (not in the context);
    start_logits[decoy_windows[0], :3] = end_logits[decoy_windows[0], :3] = 50.0
    # an end before its start;
    first, second = context_tokens(decoy_windows[1])[:2]
    start_logits[decoy_windows[1], second] = end_logits[decoy_windows[1], first] = 40.0
    # a span longer than max_answer_length (4 tokens);
    first, sixth = context_tokens(decoy_windows[2])[0], context_tokens(decoy_windows[2])[5]
    start_logits[decoy_windows[2], first] = end_logits[decoy_windows[2], sixth] = 30.0
    # positions past the end of the window (logit padding).
    start_logits[answer_window, MAX_SEQ_LENGTH:] = end_logits[answer_window, MAX_SEQ_LENGTH:] = 60.0

    # "the blue tree" ends the context of the other example: its last token is the last context token.
    last_window = windows_of("end")[-1]
    start, end = token_span(last_window, "the blue tree", END_ROW["context"])
    assert end == context_tokens(last_window)[-1]
    start_logits[last_window, start] = end_logits[last_window, end] = 1.0

    predictions = postprocess_qa_predictions(
        examples, features, start_logits, end_logits, n_best_size=20, max_answer_length=4
    )
    assert predictions == {"long": "Red Tree", "end": "the blue tree"}

    # The predictions feed the squad metric directly: "the blue tree" vs gold "blue tree" is an exact match.
    scores = load_metric("squad").compute(**squad_metric_inputs(predictions, examples))
    assert scores == {"exact_match": 100.0, "f1": 100.0}


def test_postprocess_rejects_logits_that_do_not_match_the_features(wordpiece_tokenizer):
    evaluation = prepare_eval_features(as_batch([LONG_ROW]), wordpiece_tokenizer, MAX_SEQ_LENGTH, DOC_STRIDE)
    logits = np.zeros((len(evaluation["input_ids"]) - 1, MAX_SEQ_LENGTH))
    with pytest.raises(ValueError, match="one row of each per feature"):
        postprocess_qa_predictions(as_batch([LONG_ROW]), evaluation, logits, logits)


def test_filter_squad_examples_relocates_drops_and_counts(wordpiece_tokenizer):
    context = "the cat sat on the mat and then the cat ran to the mat"
    occurrences = [0, 32]  # "the cat" occurs twice; a wrong answer_start of 29 is nearest to 32
    assert [context.find("the cat"), context.find("the cat", 1)] == occurrences
    rows = [
        squad_row("ok", "who sat ?", context, "the cat"),
        squad_row("moved", "who ran ?", context, "the cat", answer_start=29),
        squad_row("missing", "who ?", context, "the dog", answer_start=0),
        squad_row("no-question", "   ", context, "the cat"),
        squad_row("no-context", "who ?", "", "x", answer_start=0),
        {**squad_row("no-answer", "who ?", context, "cat"), "answers": {"text": [], "answer_start": []}},
        squad_row("blank-answer", "who ?", context, " ", answer_start=3),
        squad_row("long-question", "the cat " * 12 + "?", context, "the mat"),
    ]
    dataset = datasets.Dataset.from_list(rows, features=SQUAD_FEATURES)

    kept, counts = filter_squad_examples(dataset)
    assert kept["id"] == ["ok", "moved", "long-question"]  # no tokenizer: question length not checked
    assert counts == {
        "relocated": 1,
        "empty_question": 1,
        "empty_context": 1,
        "no_answer": 1,
        "empty_answer": 1,
        "answer_not_in_context": 1,
        "question_too_long": 0,
    }
    assert kept["answers"][1] == {"text": ["the cat"], "answer_start": [32]}
    assert kept["answers"][0] == {"text": ["the cat"], "answer_start": [0]}
    assert kept.features == dataset.features

    kept, counts = filter_squad_examples(dataset, wordpiece_tokenizer, MAX_SEQ_LENGTH, DOC_STRIDE)
    assert kept["id"] == ["ok", "moved"]
    assert counts["question_too_long"] == 1 and set(counts) == {"relocated", *DROP_REASONS}
    # What is kept tokenizes without error.
    prepare_train_features(kept[:], wordpiece_tokenizer, MAX_SEQ_LENGTH, DOC_STRIDE)


def test_filter_squad_examples_names_missing_columns():
    with pytest.raises(ValueError, match=r"missing the column\(s\) \['answers'\]"):
        filter_squad_examples(datasets.Dataset.from_dict({"id": ["a"], "question": ["q"], "context": ["c"]}))


MIRROR = os.environ.get("LMRECIPES_DATA_MIRROR")


@pytest.mark.skipif(not MIRROR or not Path(MIRROR, "rajpurkar/squad").is_dir(), reason="no SQuAD mirror")
def test_real_squad_rows_go_through_the_pipeline():
    examples = datasets.load_dataset(
        str(Path(MIRROR, "rajpurkar/squad")), "plain_text", split="validation[:12]"
    )
    tokenizer = train_tokenizer(
        list(examples["context"]) + list(examples["question"]), "wordpiece", vocab_size=400
    )
    examples, counts = filter_squad_examples(examples, tokenizer, max_seq_length=64, doc_stride=16)
    assert len(examples) == 12 and sum(counts.values()) == 0  # the official dev file is clean

    args = dict(tokenizer=tokenizer, max_seq_length=64, doc_stride=16)
    train = examples.map(
        prepare_train_features, batched=True, remove_columns=examples.column_names, fn_kwargs=args
    )
    evaluation = examples.map(
        prepare_eval_features, batched=True, remove_columns=examples.column_names, fn_kwargs=args
    )
    assert set(train.column_names) == {
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "start_positions",
        "end_positions",
    }
    assert set(evaluation.column_names) == {
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "offset_mapping",
        "example_id",
    }
    assert len(train) == len(evaluation) > len(examples)  # long contexts gave several windows

    # Oracle logits from the training labels decode back to (a token-aligned superset of) each gold answer.
    start_logits = np.zeros((len(train), 64))
    end_logits = np.zeros((len(train), 64))
    for window, (start, end) in enumerate(zip(train["start_positions"], train["end_positions"], strict=True)):
        if start != 0:
            start_logits[window, start] = end_logits[window, end] = 10.0
    predictions = postprocess_qa_predictions(examples, evaluation, start_logits, end_logits)
    for example in examples:
        assert example["answers"]["text"][0].lower() in predictions[example["id"]].lower()


def test_padding_of_a_batch_does_not_change_the_ranked_spans():
    """Logits come padded to the batch's longest window; the padding's logits must not take n-best places."""
    offsets = [None, (0, 3), (4, 7), (8, 12)]  # [CLS] and three context tokens
    start_logits, end_logits = [0.0, 2.0, 1.0, 0.5], [0.0, 0.5, 3.0, 1.0]
    alone = rank_answer_spans([offsets], [start_logits], [end_logits], n_best_size=2)
    padding = [9.0, 9.0, 9.0]  # what the model happens to give padded positions
    padded = rank_answer_spans([offsets], [start_logits + padding], [end_logits + padding], n_best_size=2)
    assert alone and (alone[0].start_char, alone[0].end_char) == (0, 7)
    assert padded == alone
