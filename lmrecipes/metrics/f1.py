"""F1 score for classification: the harmonic mean of precision and recall, via scikit-learn.

An `evaluate` metric script shipped with lmrecipes so that it loads without the Hugging Face Hub
(see `lmrecipes.metrics.load_metric`). The averaging mode is the metric's config name, so that
`evaluate.combine` (which passes the same compute kwargs to every metric) can mix it with accuracy:

    load_metric("f1")                        # binary F1 of label 1 (the default, as in sklearn)
    load_metric("f1", config_name="macro")   # unweighted mean of the per-class F1 scores

`compute(..., average=...)` overrides the config name for one call.
"""

import datasets
import evaluate
from sklearn.metrics import f1_score

_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""

_DESCRIPTION = "F1 = 2 * precision * recall / (precision + recall), computed with sklearn.metrics.f1_score."

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): gold labels.
    average (str, optional): "binary", "macro", "micro" or "weighted"; defaults to the config name
        ("default" means "binary").
    labels (list of int, optional): the labels to include when average is not "binary".
    pos_label (int, default 1): the positive class when average="binary".
    sample_weight (list of float, optional): per-example weights.
Returns:
    f1 (float): in [0, 1].
Example:
    >>> from lmrecipes.metrics import load_metric
    >>> load_metric("f1").compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 1])
    {'f1': 0.5}
"""

AVERAGES = ("binary", "macro", "micro", "weighted")


class F1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in ("default", *AVERAGES):
            raise ValueError(f"f1: unknown config_name {self.config_name!r}; expected one of {AVERAGES}.")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"
            ],
        )

    def _compute(self, predictions, references, average=None, labels=None, pos_label=1, sample_weight=None):
        if average is None:
            average = "binary" if self.config_name == "default" else self.config_name
        score = f1_score(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
        )
        return {"f1": float(score)}
