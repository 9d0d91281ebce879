"""The classic text-classification baseline our classification recipes must beat: tf-idf + logistic regression.

Word 1-2-gram tf-idf (sublinear tf) and scikit-learn's LogisticRegression, trained on the task's full train split
and scored on its full evaluation split in the unit the field publishes (accuracy):

    IMDB   stanfordnlp/imdb   train 25,000 reviews -> test 25,000 reviews
    SST-2  stanfordnlp/sst2   train 67,349 sentences -> validation 872 sentences (the test labels are hidden)

Usage (from the repository root; datasets by Hub id, read through $LMRECIPES_DATA_MIRROR when set):

    LMRECIPES_DATA_MIRROR=../shared/datasets .venv/bin/python benchmarks/bench_tfidf_baseline.py --update_results true
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from common import DEFAULT_RESULTS_FILE, machine_info, machine_lines, markdown_table, update_results_section
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from transformers import HfArgumentParser

from lmrecipes.data import load_hub_dataset

RESULTS_SECTION = "Classic baseline: tf-idf + logistic regression"

# task -> (Hub id, text column, train split, evaluation split)
TASKS = {
    "imdb": ("stanfordnlp/imdb", "text", "train", "test"),
    "sst2": ("stanfordnlp/sst2", "sentence", "train", "validation"),
}


@dataclass
class BaselineArguments:
    tasks: list[str] = field(default_factory=lambda: list(TASKS), metadata={"help": f"Any of {list(TASKS)}."})
    max_features: int = field(default=200_000, metadata={"help": "Vocabulary of 1-2-grams kept by tf-idf."})
    regularization: float = field(
        default=4.0, metadata={"help": "LogisticRegression's C (inverse strength)."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N rows (tests)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Score the first N rows (tests)."})
    update_results: bool = field(default=False, metadata={"help": "Write the table into RESULTS.md."})
    results_file: str = field(default=str(DEFAULT_RESULTS_FILE))


def first(rows, limit: int | None):
    return rows if limit is None else rows.shuffle(seed=0).select(range(min(limit, len(rows))))


def run_task(task: str, args: BaselineArguments) -> dict[str, object]:
    dataset_name, text_column, train_split, eval_split = TASKS[task]
    train = first(load_hub_dataset(dataset_name, None, train_split), args.max_train_samples)
    evaluation = first(load_hub_dataset(dataset_name, None, eval_split), args.max_eval_samples)
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=args.max_features
    )
    features = vectorizer.fit_transform(train[text_column])
    classifier = LogisticRegression(C=args.regularization, max_iter=1000)
    classifier.fit(features, train["label"])
    accuracy = classifier.score(vectorizer.transform(evaluation[text_column]), evaluation["label"])
    return {
        "task": task,
        "train rows": len(train),
        "scored rows": f"{len(evaluation)} ({eval_split})",
        "accuracy": accuracy,
        "seconds (fit + score)": time.perf_counter() - start,
    }


def main() -> None:
    (args,) = HfArgumentParser(BaselineArguments).parse_args_into_dataclasses()
    unknown = sorted(set(args.tasks) - set(TASKS))
    if unknown:
        raise SystemExit(f"--tasks: unknown {unknown}; choose from {list(TASKS)}")
    info = machine_info("cpu")
    rows = [run_task(task, args) for task in args.tasks]
    table = markdown_table(
        list(rows[0]),
        [
            [
                f"{value:.4f}" if key == "accuracy" else f"{value:.1f}" if isinstance(value, float) else value
                for key, value in row.items()
            ]
            for row in rows
        ],
    )
    print(table)
    if args.update_results:
        body = (
            "Word 1-2-gram tf-idf (sublinear tf, min_df 2, at most "
            f"{args.max_features:,} features) + scikit-learn LogisticRegression (C={args.regularization}), full "
            "train split, full evaluation split; time is fit + score in one process, data loading excluded.\n\n"
            + table
            + "\n\n"
            + machine_lines(info)
        )
        update_results_section(Path(args.results_file), RESULTS_SECTION, body)


if __name__ == "__main__":
    main()
