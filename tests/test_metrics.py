"""The shipped metrics load through `evaluate` without the network and agree with independent computations."""

import socket

import evaluate
import numpy as np
import pytest
import sacrebleu
from sklearn.metrics import accuracy_score, f1_score

from lmrecipes.metrics import METRIC_NAMES, load_classification_metrics, load_metric


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(0)
    return rng.integers(0, 3, size=60).tolist(), rng.integers(0, 3, size=60).tolist()


def test_accuracy_matches_sklearn_and_accumulates_batches(labels):
    predictions, references = labels
    accuracy = load_metric("accuracy")
    assert accuracy.compute(predictions=predictions, references=references) == {
        "accuracy": pytest.approx(accuracy_score(references, predictions))
    }
    # add_batch accumulates (as in an evaluation loop) to the same result as one compute over everything.
    accuracy.add_batch(predictions=predictions[:25], references=references[:25])
    accuracy.add_batch(predictions=predictions[25:], references=references[25:])
    assert accuracy.compute()["accuracy"] == pytest.approx(accuracy_score(references, predictions))


def test_f1_binary_and_macro_match_sklearn(labels):
    predictions, references = labels
    binary_predictions = [int(p > 0) for p in predictions]
    binary_references = [int(r > 0) for r in references]
    assert load_metric("f1").compute(predictions=binary_predictions, references=binary_references)[
        "f1"
    ] == pytest.approx(f1_score(binary_references, binary_predictions))

    macro = f1_score(references, predictions, average="macro")
    assert load_metric("f1", config_name="macro").compute(predictions=predictions, references=references)[
        "f1"
    ] == pytest.approx(macro)
    # A compute-time `average` overrides the config.
    assert load_metric("f1").compute(predictions=predictions, references=references, average="macro")[
        "f1"
    ] == pytest.approx(macro)


def test_classification_metrics_combine_accuracy_and_f1(labels):
    predictions, references = labels
    results = load_classification_metrics("macro").compute(predictions=predictions, references=references)
    assert results == {
        "accuracy": pytest.approx(accuracy_score(references, predictions)),
        "f1": pytest.approx(f1_score(references, predictions, average="macro")),
    }


def test_unknown_metric_or_f1_average_is_rejected():
    with pytest.raises(ValueError, match="Unknown metric 'bleu'"):
        load_metric("bleu")
    with pytest.raises(ValueError, match="unknown config_name 'samples'"):
        load_metric("f1", config_name="samples")


def squad_reference(question_id, *texts):
    return {"id": question_id, "answers": {"text": list(texts), "answer_start": [0] * len(texts)}}


def test_squad_normalisation_hand_worked():
    squad = load_metric("squad")
    cases = [
        # (prediction, gold answers, exact match, F1) worked out by hand with the official normalisation:
        ("The Cat!", ["cat"], 100.0, 100.0),  # case, article and punctuation are ignored
        ("U.S.", ["US"], 100.0, 100.0),  # punctuation inside a word is deleted, not split on
        ("Broncos, Denver", ["Denver Broncos"], 0.0, 100.0),  # F1 is over bags of tokens
        # "big red dog" vs "red dog": 2 common tokens, precision 2/3, recall 1, F1 = 0.8; max over golds.
        ("a big red dog", ["blue fish", "the red dog"], 0.0, 80.0),
        ("an   apple", ["apple"], 100.0, 100.0),  # "an" removed, whitespace collapsed
        ("theatre", ["the atre"], 0.0, 0.0),  # articles only go as whole words
    ]
    for prediction, golds, exact_match, f1 in cases:
        result = squad.compute(
            predictions=[{"id": "q", "prediction_text": prediction}],
            references=[squad_reference("q", *golds)],
        )
        assert result == {"exact_match": pytest.approx(exact_match), "f1": pytest.approx(f1)}, prediction


def test_squad_means_over_questions_and_scores_unanswered_as_zero():
    predictions = [
        {"id": "q1", "prediction_text": "The Cat!"},  # EM 1, F1 1
        {"id": "q2", "prediction_text": "a big red dog"},  # EM 0, F1 0.8
        {"id": "q9", "prediction_text": "x"},  # not a reference question: ignored
    ]  # q3 has no prediction: 0 and 0, as in the official script
    references = [
        squad_reference("q1", "cat"),
        squad_reference("q2", "the red dog"),
        squad_reference("q3", "x"),
    ]
    result = load_metric("squad").compute(predictions=predictions, references=references)
    assert result["exact_match"] == pytest.approx(100 * 1 / 3)
    assert result["f1"] == pytest.approx(100 * 1.8 / 3)


PREDICTIONS = [
    "The cat sat on the mat near the door.",
    "A quick brown fox jumps over the lazy dog!",
    "It was raining heavily, so we stayed home.",
]
REFERENCES = [
    ["The cat sat on a mat by the door.", "A cat was sitting on the mat near the door."],
    ["The quick brown fox jumped over the lazy dog.", "A fast brown fox leaps over a lazy dog."],
    ["It rained heavily so we stayed at home.", "We stayed home because it was raining hard."],
]


def by_stream(references):
    return [list(stream) for stream in zip(*references, strict=True)]


def test_sacrebleu_matches_sacrebleu_corpus_bleu():
    bleu = sacrebleu.BLEU()
    expected = bleu.corpus_score(PREDICTIONS, by_stream(REFERENCES))
    result = load_metric("sacrebleu").compute(predictions=PREDICTIONS, references=REFERENCES)
    assert 0 < result["score"] < 100
    assert result["score"] == pytest.approx(expected.score)
    assert result["counts"] == expected.counts and result["sys_len"] == expected.sys_len
    assert result["signature"] == str(bleu.get_signature())
    assert result["signature"].startswith("nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp")

    single = [refs[0] for refs in REFERENCES]  # one plain string per prediction also works
    assert load_metric("sacrebleu").compute(predictions=PREDICTIONS, references=single)[
        "score"
    ] == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, [single]).score)


def test_sacrebleu_rejects_ragged_references():
    with pytest.raises(ValueError, match=r"references\[1\] has 1 references"):
        load_metric("sacrebleu").compute(
            predictions=PREDICTIONS, references=[REFERENCES[0], ["x"], REFERENCES[2]]
        )


def test_chrf_and_chrf_plus_plus_match_sacrebleu():
    chrf = load_metric("chrf")
    result = chrf.compute(predictions=PREDICTIONS, references=REFERENCES)
    assert result["score"] == pytest.approx(sacrebleu.corpus_chrf(PREDICTIONS, by_stream(REFERENCES)).score)
    assert "nc:6|nw:0" in result["signature"]
    chrf_plus_plus = chrf.compute(predictions=PREDICTIONS, references=REFERENCES, word_order=2)
    expected = sacrebleu.CHRF(word_order=2).corpus_score(PREDICTIONS, by_stream(REFERENCES)).score
    assert chrf_plus_plus["score"] == pytest.approx(expected)
    assert chrf_plus_plus["score"] != pytest.approx(result["score"])


def test_every_metric_loads_with_the_network_blocked(monkeypatch, tmp_path):
    # Every socket is blocked and attempts are recorded (in case a library swallows the error), and evaluate's
    # modules cache is a fresh folder, so each script goes the whole evaluate.load path again.
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path / "modules")

    for name in METRIC_NAMES:
        metric = load_metric(name)
        assert isinstance(metric, evaluate.EvaluationModule)
        assert metric.name == name
        # evaluate copied the shipped script into the (fresh) cache it imports metric scripts from.
        assert list((tmp_path / "modules" / "evaluate_modules" / "metrics" / name).glob(f"*/{name}.py"))
    assert load_metric("accuracy").compute(predictions=[1, 0], references=[1, 1]) == {"accuracy": 0.5}
    assert attempts == []
