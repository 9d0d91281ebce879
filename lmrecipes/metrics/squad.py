"""SQuAD v1.1: exact match and token F1 of extracted answers, as the official evaluation script computes them.

Rajpurkar et al. (2016). The official `evaluate-v1.1.py` normalises both texts (lower case, strip punctuation,
drop the articles a/an/the, collapse whitespace), scores a prediction against every gold answer of its question
and keeps the best score, then reports the mean over all questions in percent. A question without a
prediction scores 0, as in the official script. An `evaluate` metric script shipped with lmrecipes so that it
loads without the Hugging Face Hub (see `lmrecipes.metrics.load_metric`).
"""

import logging
import re
import string
from collections import Counter

import datasets
import evaluate

logger = logging.getLogger(__name__)

_PUNCTUATION = set(string.punctuation)

_CITATION = """\
@inproceedings{Rajpurkar2016SQuAD10,
  title={SQuAD: 100,000+ Questions for Machine Comprehension of Text},
  author={Pranav Rajpurkar and Jian Zhang and Konstantin Lopyrev and Percy Liang},
  booktitle={EMNLP},
  year={2016}
}
"""

_DESCRIPTION = (
    "Official SQuAD v1.1 exact match and F1 (in percent), max over the gold answers of each question."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of dict): {"id": str, "prediction_text": str} for each answered question.
    references (list of dict): {"id": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}}, the
        SQuAD dataset format (answer_start is not used by the score).
Returns:
    exact_match (float): percent of questions whose normalised prediction equals a normalised gold answer.
    f1 (float): mean over questions of the best token-level F1 against the gold answers, in percent.
Example:
    >>> from lmrecipes.metrics import load_metric
    >>> predictions = [{"id": "q1", "prediction_text": "The Cat!"}]
    >>> references = [{"id": "q1", "answers": {"text": ["cat"], "answer_start": [4]}}]
    >>> load_metric("squad").compute(predictions=predictions, references=references)
    {'exact_match': 100.0, 'f1': 100.0}
"""


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official SQuAD v1.1 normalisation)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


class Squad(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {
                        "id": datasets.Value("string"),
                        "prediction_text": datasets.Value("string"),
                    },
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": {
                            "text": datasets.List(datasets.Value("string")),
                            "answer_start": datasets.List(datasets.Value("int32")),
                        },
                    },
                }
            ),
            codebase_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references):
        if not references:
            raise ValueError("squad: no references to score.")
        predicted_text = {prediction["id"]: prediction["prediction_text"] for prediction in predictions}
        exact_match = f1 = 0.0
        for reference in references:
            ground_truths = reference["answers"]["text"]
            if not ground_truths:
                raise ValueError(f"squad: reference {reference['id']!r} has no gold answer text.")
            if reference["id"] not in predicted_text:
                logger.warning("Unanswered question %s will receive score 0.", reference["id"])
                continue
            prediction = predicted_text[reference["id"]]
            exact_match += max(exact_match_score(prediction, truth) for truth in ground_truths)
            f1 += max(f1_score(prediction, truth) for truth in ground_truths)
        return {"exact_match": 100.0 * exact_match / len(references), "f1": 100.0 * f1 / len(references)}
