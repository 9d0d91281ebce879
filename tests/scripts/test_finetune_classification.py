"""Classification fine-tuning: tiny pretraining chained into the SST-2 recipes of all three families (mini_bert
through `accelerate launch`), IMDB windows checked against an independent recomputation, bad rows, early stopping
with the best checkpoint saved, and the from-scratch baseline."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features
from helpers import (
    REPO_ROOT,
    accelerate_launch,
    local_recipe,
    needs_mirror,
    pretrain_tiny,
    read_json,
    run_recipe,
    script_main,
    write_jsonl,
)
from safetensors.torch import load_file
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    EvalPrediction,
    TrainingArguments,
    pipeline,
)

from lmrecipes.classification import (
    ClassificationArguments,
    bad_example_checks,
    build_compute_metrics,
    class_names,
    combine_windows,
    pooling_override,
    tokenize_for_classification,
)
from lmrecipes.data import drop_bad_examples, load_hub_dataset, take_samples
from lmrecipes.finetuning import (
    FinetuneArguments,
    FinetuneDataArguments,
    early_stopping,
    load_for_finetuning,
)
from lmrecipes.recipe import parse_recipe
from lmrecipes.training import RecipeTrainingArguments

finetune_classification = script_main("finetune_classification")

pytestmark = needs_mirror("stanfordnlp/sst2")

ARGUMENT_TYPES = (FinetuneArguments, FinetuneDataArguments, ClassificationArguments, RecipeTrainingArguments)
SENTENCES = [
    "a gorgeous , witty , seductive movie .",
    "the acting is bad and the plot is worse",
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "a thoughtful , provocative , insistently humanizing film .",
]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """family -> a tiny pretrained output folder (tokenizer and model pretrained on SST-2 sentences)."""
    corpus = load_hub_dataset("stanfordnlp/sst2", None, "train").select(range(1500))["sentence"]
    folders = {}

    def get(family: str) -> Path:
        if family not in folders:
            folders[family] = pretrain_tiny(family, tmp_path_factory.mktemp(f"{family}-pretrained"), corpus)
        return folders[family]

    return get


def predictions_of(output_dir: Path, texts: list[str]) -> tuple[list[str], list[float]]:
    """Labels and scores straight from the saved model, one text at a time (no padding involved)."""
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    labels, scores = [], []
    with torch.no_grad():
        for text in texts:
            probabilities = model(**tokenizer(text, return_tensors="pt")).logits[0].softmax(-1)
            labels.append(model.config.id2label[int(probabilities.argmax())])
            scores.append(float(probabilities.max()))
    return labels, scores


def check_pipeline_matches_model(output_dir: Path) -> None:
    # batch_size=len: the pipeline pads the batch with the saved tokenizer, which must not change any prediction.
    classify = pipeline("text-classification", model=str(output_dir), device="cpu")
    results = classify(SENTENCES, batch_size=len(SENTENCES))
    labels, scores = predictions_of(output_dir, SENTENCES)
    assert [result["label"] for result in results] == labels
    assert [result["score"] for result in results] == pytest.approx(scores, abs=1e-5)


def check_results(output_dir: Path) -> dict:
    results = read_json(output_dir / "all_results.json")
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and 0.0 <= results["eval_f1"] <= 1.0
    # load_best_model_at_end: the model saved and scored last is the best evaluated checkpoint.
    state = read_json(output_dir / "trainer_state.json")
    assert results["eval_accuracy"] == pytest.approx(state["best_metric"])
    assert "eval_accuracy" in (output_dir / "README.md").read_text()
    return results


# --------------------------------------------------------------------------------------------- end to end


def test_sst2_recipe_through_accelerate_launch(pretrained, tmp_path):
    output_dir = tmp_path / "sst2"
    accelerate_launch(
        "finetune_classification.py",
        "recipes/mini_bert/sst2_tiny.yaml",
        "--model_name_or_path",
        str(pretrained("mini_bert")),
        "--output_dir",
        str(output_dir),
    )
    check_results(output_dir)
    config = read_json(output_dir / "config.json")
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["architectures"] == ["MiniBertForSequenceClassification"]
    check_pipeline_matches_model(output_dir)


@pytest.mark.parametrize("family", ["lstm_lm", "mini_gpt"])
def test_causal_families_classify_from_the_last_real_token(family, pretrained, tmp_path):
    output_dir = tmp_path / family
    run_recipe(
        ARGUMENT_TYPES,
        finetune_classification,
        f"recipes/{family}/sst2_tiny.yaml",
        "--model_name_or_path",
        str(pretrained(family)),
        "--output_dir",
        str(output_dir),
        "--max_steps",
        "20",
    )
    check_results(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert tokenizer.padding_side == "right" and tokenizer.pad_token is not None
    check_pipeline_matches_model(output_dir)


def test_mean_pooling_is_saved_with_the_model_and_classifies_padded_batches_alike(pretrained, tmp_path):
    output_dir = tmp_path / "mean"
    run_recipe(
        ARGUMENT_TYPES,
        finetune_classification,
        "recipes/mini_bert/sst2_tiny.yaml",
        *("--model_name_or_path", str(pretrained("mini_bert")), "--output_dir", str(output_dir)),
        *("--classifier_pooling", "mean", "--max_steps", "20"),
    )
    check_results(output_dir)
    assert read_json(output_dir / "config.json")["classifier_pooling"] == "mean"
    check_pipeline_matches_model(output_dir)  # padding in the batch must not move the mean


def test_classifier_pooling_is_refused_for_a_family_without_it(pretrained, tmp_path):
    output_dir = tmp_path / "gpt"
    with pytest.raises(ValueError, match="classifier_pooling: mini_gpt models have no such option"):
        run_recipe(
            ARGUMENT_TYPES,
            finetune_classification,
            "recipes/mini_gpt/sst2_tiny.yaml",
            *("--model_name_or_path", str(pretrained("mini_gpt")), "--output_dir", str(output_dir)),
            *("--classifier_pooling", "mean"),
        )
    assert not output_dir.exists()  # refused before anything was written


def test_a_pooling_of_another_family_is_refused_by_name(pretrained, tmp_path):
    output_dir = tmp_path / "lstm"
    with pytest.raises(
        ValueError, match=r"^classifier_pooling: .*must be one of \('last', 'mean'\), got 'cls'"
    ):
        run_recipe(
            ARGUMENT_TYPES,
            finetune_classification,
            "recipes/lstm_lm/sst2_tiny.yaml",
            *("--model_name_or_path", str(pretrained("lstm_lm")), "--output_dir", str(output_dir)),
            *("--classifier_pooling", "cls"),
        )
    assert not output_dir.exists()
    # Its own poolings pass the same check.
    for pooling in ("last", "mean"):
        assert pooling_override(pooling, str(pretrained("lstm_lm"))) == {"classifier_pooling": pooling}


def imdb_window_overrides(pretrained, output_dir: Path) -> list[str]:
    """recipes/mini_bert/imdb.yaml cut down: 32-token windows sharing 8, 12 test reviews, 4 steps."""
    return [
        *("--model_name_or_path", str(pretrained("mini_bert")), "--output_dir", str(output_dir)),
        *("--max_seq_length", "32", "--window_stride", "8", "--max_train_samples", "16"),
        *("--max_eval_samples", "12", "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2"),
        *("--disable_tqdm", "true"),
    ]


def accuracy_over_reviews(output_dir: Path, arguments) -> tuple[float, int]:
    """The saved model's accuracy on the recipe's evaluation reviews, recomputed window by window; and the number
    of windows."""
    _, data_args, _, training_args = arguments
    reviews = take_samples(
        data_args.load_split(data_args.eval_split), data_args.max_eval_samples, training_args.seed
    )
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    correct = num_windows = 0
    for review in reviews:
        windows = tokenizer(
            review["text"], truncation=True, max_length=32, stride=8, return_overflowing_tokens=True
        )
        del windows["overflow_to_sample_mapping"]
        assert len(windows["input_ids"]) > 1  # every IMDB review is longer than 32 tokens
        num_windows += len(windows["input_ids"])
        with torch.no_grad():
            logits = model(**tokenizer.pad(windows, return_tensors="pt")).logits
        correct += int(logits.softmax(-1).mean(0).argmax()) == review["label"]
    return correct / len(reviews), num_windows


def test_imdb_windows_are_combined_per_review(pretrained, tmp_path):
    """The reported accuracy is over reviews: recomputed here from the saved model, window by window."""
    output_dir = tmp_path / "imdb"
    *arguments, recipe = parse_recipe(
        ARGUMENT_TYPES,
        [str(REPO_ROOT / "recipes/mini_bert/imdb.yaml"), *imdb_window_overrides(pretrained, output_dir)],
    )
    metrics = finetune_classification(*arguments, recipe)
    assert metrics["eval_accuracy"] == pytest.approx(accuracy_over_reviews(output_dir, arguments)[0])


def test_two_processes_combine_the_windows_of_each_review(pretrained, tmp_path):
    """DDP (2 gloo processes): the windows are sharded over the processes and gathered back; batches of 5 windows
    leave an uneven last batch, whose padding repeats must not count. The reported accuracy must still be the
    saved model's, review by review."""
    output_dir = tmp_path / "imdb-ddp"
    overrides = [*imdb_window_overrides(pretrained, output_dir), "--per_device_eval_batch_size", "5"]
    accelerate_launch(
        "finetune_classification.py", "recipes/mini_bert/imdb.yaml", *overrides, config="multi_cpu.yaml"
    )
    *arguments, _ = parse_recipe(ARGUMENT_TYPES, [str(REPO_ROOT / "recipes/mini_bert/imdb.yaml"), *overrides])
    accuracy, num_windows = accuracy_over_reviews(output_dir, arguments)
    assert num_windows % (2 * 5), "the last batch must be uneven for this test to bite"
    assert read_json(output_dir / "all_results.json")["eval_accuracy"] == pytest.approx(accuracy)


def test_bad_rows_are_skipped_with_one_summary_line_each(pretrained, tmp_path, caplog):
    good = [{"sentence": text, "label": i % 2} for i, text in enumerate(SENTENCES * 2)]
    bad = [
        {"sentence": "", "label": 1},
        {"sentence": "   ", "label": 0},
        {"sentence": "no label here", "label": None},
        {"sentence": "a hidden test label", "label": -1},
    ]
    files = {
        "train_file": write_jsonl(tmp_path / "train.jsonl", good[:6] + bad + good[6:]),
        # A class the training data never shows cannot be scored.
        "validation_file": write_jsonl(
            tmp_path / "validation.jsonl", good[:4] + [{"sentence": "x", "label": 5}]
        ),
    }
    recipe = local_recipe(
        "recipes/mini_bert/sst2_tiny.yaml",
        tmp_path / "local.yaml",
        **{name: str(path) for name, path in files.items()},
        max_steps=4,
        eval_steps=2,
        save_steps=2,
    )
    model = ("--model_name_or_path", str(pretrained("mini_bert")))

    with caplog.at_level(logging.WARNING, logger="lmrecipes.data"):
        metrics = run_recipe(
            ARGUMENT_TYPES, finetune_classification, recipe, *model, "--output_dir", str(tmp_path / "out")
        )
    assert [record.getMessage() for record in caplog.records if "skipped" in record.getMessage()] == [
        "train split 'train': skipped 4 of 14 examples (2 empty text, 2 missing label)",
        "eval split 'validation': skipped 1 of 5 examples (1 unknown label)",
    ]
    assert metrics["train_runtime"] > 0 and "eval_accuracy" in metrics

    # Nothing usable left: a clear error before any training.
    only_bad = write_jsonl(tmp_path / "bad.jsonl", bad)
    output_dir = tmp_path / "never"
    with pytest.raises(ValueError, match=r"train split 'train': no usable example left after skipping 4"):
        run_recipe(
            ARGUMENT_TYPES,
            finetune_classification,
            recipe,
            *model,
            *("--output_dir", str(output_dir), "--train_file", str(only_bad)),
        )
    assert not output_dir.exists()


def test_early_stopping_keeps_the_best_checkpoint(pretrained, tmp_path):
    """With 'the higher the loss the better', the first evaluation is the best and training stops at the next."""
    output_dir = tmp_path / "early"
    run_recipe(
        ARGUMENT_TYPES,
        finetune_classification,
        "recipes/mini_bert/sst2_tiny.yaml",
        "--model_name_or_path",
        str(pretrained("mini_bert")),
        "--output_dir",
        str(output_dir),
        "--metric_for_best_model",
        "loss",
        "--greater_is_better",
        "true",
        "--early_stopping_patience",
        "1",
        "--eval_steps",
        "4",
        "--save_steps",
        "4",
        "--save_total_limit",
        "10",
        "--learning_rate",
        "3e-3",
    )
    state = read_json(output_dir / "trainer_state.json")
    checkpoints = sorted((path for path in output_dir.glob("checkpoint-*")), key=lambda p: int(p.name[11:]))
    assert state["global_step"] < state["max_steps"]  # stopped early
    best = Path(state["best_model_checkpoint"])
    assert best.name != checkpoints[-1].name  # the last evaluation did not improve: that is why it stopped
    saved = load_file(output_dir / "model.safetensors")
    best_weights = load_file(best / "model.safetensors")
    last_weights = load_file(checkpoints[-1] / "model.safetensors")
    assert all(torch.equal(saved[name], best_weights[name]) for name in saved)
    assert not all(torch.equal(saved[name], last_weights[name]) for name in saved)


# --------------------------------------------------------------------------------------------- pieces


def test_combine_windows_averages_each_texts_windows():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [4.0, 0.0], [1.0, 3.0], [0.0, 0.0]])
    labels = np.array([0, 0, 1, 1, 1])
    example_index = np.array([7, 7, 3, 3, 3])  # text 3 has three windows, text 7 two; results sorted by index

    mean_logits, text_labels = combine_windows(logits, labels, example_index, "mean_logits")
    np.testing.assert_allclose(mean_logits, [[5 / 3, 1.0], [1.0, 0.5]])
    np.testing.assert_array_equal(text_labels, [1, 0])

    probabilities = torch.tensor(logits).softmax(-1).numpy()
    mean_probabilities, _ = combine_windows(logits, labels, example_index, "mean_probabilities")
    np.testing.assert_allclose(mean_probabilities[0], probabilities[2:].mean(0))
    np.testing.assert_allclose(mean_probabilities[1], probabilities[:2].mean(0))


def test_window_metrics_count_texts_not_windows():
    # Text 0: windows vote 1, 1, 0 but the mean probability says 0 (the 0 window is very sure); text 1: one window.
    logits = np.array([[0.0, 0.1], [0.0, 0.1], [9.0, 0.0], [0.0, 2.0]])
    labels = np.array([0, 0, 0, 1])
    prediction = EvalPrediction(predictions=logits, label_ids=labels)
    assert build_compute_metrics(2, example_index=[0, 0, 0, 1])(prediction)["accuracy"] == 1.0
    assert build_compute_metrics(2)(prediction)["accuracy"] == 0.5  # per window


def test_windows_overlap_by_the_stride_and_keep_their_texts_label(pretrained):
    tokenizer = AutoTokenizer.from_pretrained(pretrained("mini_bert"))
    texts = Dataset.from_dict({"text": [" ".join(SENTENCES * 3), "short one"], "label": [1, 0]})
    args = ClassificationArguments(max_seq_length=16, long_text_strategy="windows", window_stride=4)
    windows = tokenize_for_classification(texts, tokenizer, args, ["neg", "pos"])
    first_text = [row for row in windows if row["example_index"] == 0]
    assert len(first_text) > 2 and len(windows) == len(first_text) + 1
    assert {row["labels"] for row in first_text} == {1} and windows[-1]["labels"] == 0
    for left, right in zip(first_text, first_text[1:], strict=False):
        # [CLS] text [SEP]: the last 4 text tokens of a window start the next one.
        assert left["input_ids"][-5:-1] == right["input_ids"][1:5]
    assert all(len(row["input_ids"]) <= 16 for row in windows)

    truncated = tokenize_for_classification(
        texts, tokenizer, ClassificationArguments(max_seq_length=16), ["n", "p"]
    )
    assert len(truncated) == 2 and len(truncated[0]["input_ids"]) == 16


def test_drop_bad_examples_counts_reasons_and_fails_when_nothing_is_left(caplog):
    rows = Dataset.from_dict(
        {"text": ["good", "", "fine", None, "ok"], "label": ["pos", "neg", None, "pos", "meh"]}
    )
    checks = bad_example_checks("text", "label", ["neg", "pos"])
    with caplog.at_level(logging.WARNING, logger="lmrecipes.data"):
        kept = drop_bad_examples(rows, checks, "toy split")
    assert kept["text"] == ["good"]
    assert [r.getMessage() for r in caplog.records] == [
        "toy split: skipped 4 of 5 examples (2 empty text, 1 missing label, 1 unknown label)"
    ]
    with pytest.raises(ValueError, match="toy split: no usable example left after skipping 4"):
        drop_bad_examples(rows.select([1, 2, 3, 4]), checks, "toy split")


def test_class_names_come_from_the_features_or_the_rows():
    sst2_like = Dataset.from_dict(
        {"label": [1, 0, -1]}, features=Features({"label": ClassLabel(names=["negative", "positive"])})
    )
    assert class_names(sst2_like, "label") == ["negative", "positive"]
    # A CSV column with an empty cell is read as floats, NaN for the empty cell.
    csv_like = Dataset.from_dict({"label": [2.0, 0.0, float("nan")]})
    assert class_names(csv_like, "label") == ["0", "1", "2"]
    missing = bad_example_checks("text", "label", ["0", "1", "2"])["missing label"]
    assert [missing({"label": value}) for value in csv_like["label"]] == [False, False, True]
    assert class_names(Dataset.from_dict({"label": ["pos", "neg", None]}), "label") == ["neg", "pos"]
    with pytest.raises(ValueError, match="has no column 'sentiment'"):
        class_names(csv_like, "sentiment")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"load_best_model_at_end": False}, "needs load_best_model_at_end: true"),
        (
            {"eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False},
            "needs evaluations",
        ),
    ],
)
def test_early_stopping_needs_evaluations_and_the_best_model(overrides, message, tmp_path):
    settings = {
        "eval_strategy": "steps",
        "save_strategy": "steps",
        "load_best_model_at_end": True,
    } | overrides
    training_args = TrainingArguments(output_dir=str(tmp_path), report_to="none", **settings)
    with pytest.raises(ValueError, match=message):
        early_stopping(FinetuneArguments(model_name_or_path="x", early_stopping_patience=2), training_args)


def test_early_stopping_patience_must_be_positive(tmp_path):
    training_args = TrainingArguments(
        output_dir=str(tmp_path), eval_strategy="steps", load_best_model_at_end=True, report_to="none"
    )
    with pytest.raises(ValueError, match="early_stopping_patience must be >= 1"):
        early_stopping(FinetuneArguments(model_name_or_path="x", early_stopping_patience=0), training_args)
    (callback,) = early_stopping(
        FinetuneArguments(model_name_or_path="x", early_stopping_patience=3), training_args
    )
    assert callback.early_stopping_patience == 3
    assert early_stopping(FinetuneArguments(model_name_or_path="x"), training_args) == []


def test_from_scratch_has_the_architecture_but_not_the_weights(pretrained):
    folder = pretrained("mini_bert")
    pretrained_weights = load_file(folder / "model.safetensors")
    args = {"num_labels": 3}
    loaded = load_for_finetuning(
        AutoModelForSequenceClassification, FinetuneArguments(model_name_or_path=str(folder)), **args
    )
    scratch = load_for_finetuning(
        AutoModelForSequenceClassification,
        FinetuneArguments(model_name_or_path=str(folder), from_scratch=True),
        **args,
    )
    assert type(scratch) is type(loaded) and scratch.config.num_labels == 3
    assert scratch.config.to_diff_dict() == loaded.config.to_diff_dict()
    loaded_state, scratch_state = loaded.state_dict(), scratch.state_dict()
    assert {k: v.shape for k, v in loaded_state.items()} == {k: v.shape for k, v in scratch_state.items()}
    # The encoder's weights come from the pretrained folder, or not at all.
    shared = [name for name in loaded_state if name in pretrained_weights]
    assert shared and all(torch.equal(loaded_state[name], pretrained_weights[name]) for name in shared)
    matrices = [name for name in shared if loaded_state[name].ndim == 2]
    assert not any(torch.equal(scratch_state[name], pretrained_weights[name]) for name in matrices)


@pytest.mark.parametrize(
    "recipe",
    [
        "recipes/mini_bert/sst2.yaml",
        "recipes/mini_bert/imdb.yaml",
        "recipes/mini_gpt/sst2.yaml",
        "recipes/lstm_lm/sst2.yaml",
    ],
)
def test_full_size_recipes_parse(recipe, tmp_path):
    """The recipes too long for the tests still name only real fields with valid values."""
    finetune_args, data_args, _, training_args, _ = parse_recipe(
        ARGUMENT_TYPES,
        [str(REPO_ROOT / recipe), "--model_name_or_path", "unused", "--output_dir", str(tmp_path)],
    )
    assert data_args.eval_split in ("validation", "test")
    # The best checkpoint is chosen on a validation split, never on the test split a recipe is scored on (IMDB).
    assert training_args.load_best_model_at_end == (data_args.eval_split == "validation")
    early_stopping(finetune_args, training_args)  # the early-stopping fields fit together
