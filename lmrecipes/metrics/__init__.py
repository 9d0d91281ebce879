"""Task metrics computed through `evaluate`, from metric scripts shipped inside this package.

`evaluate.load("accuracy")` fetches the metric script from the Hugging Face Hub, which offline machines cannot
reach. lmrecipes ships its own scripts next to this file (accuracy.py, f1.py, squad.py, sacrebleu.py, chrf.py,
each an `evaluate.Metric` subclass) and gives `evaluate.load` their local path: for a path to an existing
`.py` file evaluate copies the script into its modules cache (HF_MODULES_CACHE) and imports it from there,
without any network call. What comes back is an ordinary `evaluate.EvaluationModule` (compute, add_batch,
`evaluate.combine`, ...).

    from lmrecipes.metrics import load_metric, load_classification_metrics
    squad = load_metric("squad")
    squad.compute(predictions=[{"id": "1", "prediction_text": "the cat"}],
                  references=[{"id": "1", "answers": {"text": ["cat"], "answer_start": [0]}}])
    load_classification_metrics("macro").compute(predictions=[0, 2, 1], references=[0, 1, 1])
"""

from pathlib import Path

import evaluate

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("accuracy", "f1", "squad", "sacrebleu", "chrf")


def metric_script_path(name: str) -> Path:
    """The shipped `evaluate` script of metric `name` (one of METRIC_NAMES)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}: lmrecipes ships {', '.join(METRIC_NAMES)}.")
    path = METRICS_DIR / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"Metric script {path} is missing from the installed lmrecipes package.")
    return path


def load_metric(name: str, config_name: str | None = None, **load_kwargs) -> evaluate.EvaluationModule:
    """Load a shipped metric through `evaluate.load`, offline.

    `config_name` selects a variant (f1: "binary" | "macro" | "micro" | "weighted"). Other keyword arguments go
    to `evaluate.load`. Predictions are kept in memory by default (`keep_in_memory=True`) rather than in
    evaluate's on-disk Arrow cache: lmrecipes computes metrics in one process on already gathered predictions.
    """
    load_kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(metric_script_path(name)), config_name=config_name, **load_kwargs)


def load_classification_metrics(average: str = "binary") -> evaluate.CombinedEvaluations:
    """Accuracy and F1 in one module (`evaluate.combine`): compute() returns {"accuracy": ..., "f1": ...}.

    `average` is the F1 averaging ("binary" for two classes, "macro" for more).
    """
    return evaluate.combine([load_metric("accuracy"), load_metric("f1", config_name=average)])
