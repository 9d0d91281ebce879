"""Extractive QA fine-tuning: tiny mini_bert pretraining chained into the tiny SQuAD recipe through `accelerate
launch`, the saved model answering the dev questions through the extractive-question-answering pipeline with exactly
the reported EM/F1; bad rows; and the labelled evaluation windows."""

from __future__ import annotations

import logging

import pytest
from datasets import Dataset
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
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

from lmrecipes.data import load_hub_dataset
from lmrecipes.finetuning import FinetuneArguments, FinetuneDataArguments
from lmrecipes.metrics import load_metric
from lmrecipes.pipelines import register_pipelines
from lmrecipes.pipelines.question_answering import QUESTION_ANSWERING_TASK
from lmrecipes.question_answering import (
    QuestionAnsweringArguments,
    load_squad_split,
    prepare_eval_features,
    prepare_train_features,
    prepare_validation_features,
    squad_metric_inputs,
)
from lmrecipes.recipe import parse_recipe
from lmrecipes.training import RecipeTrainingArguments

finetune_question_answering = script_main("finetune_qa")

pytestmark = needs_mirror("rajpurkar/squad")

ARGUMENT_TYPES = (
    FinetuneArguments,
    FinetuneDataArguments,
    QuestionAnsweringArguments,
    RecipeTrainingArguments,
)
TINY_RECIPE = "recipes/mini_bert/squad_tiny.yaml"
CONTEXT = "The cat sat on the red mat in the garden. The dog ran to the big house on the hill."


def squad_row(example_id: str, question: str, context: str, answer: str, start: int | None = None) -> dict:
    start = context.find(answer) if start is None else start
    return {
        "id": example_id,
        "title": "t",
        "question": question,
        "context": context,
        "answers": {"text": [answer], "answer_start": [start]},
    }


@pytest.fixture(scope="module")
def pretrained_bert(tmp_path_factory):
    """A tiny mini_bert pretrained on SQuAD questions and contexts."""
    rows = load_hub_dataset("rajpurkar/squad", None, "train").select(range(0, 3000, 5))
    corpus = [*rows["question"], *dict.fromkeys(rows["context"])]
    return pretrain_tiny("mini_bert", tmp_path_factory.mktemp("mini_bert-pretrained"), corpus)


def test_squad_recipe_through_accelerate_launch(pretrained_bert, tmp_path):
    output_dir = tmp_path / "squad"
    accelerate_launch(
        "finetune_qa.py",
        TINY_RECIPE,
        *("--model_name_or_path", str(pretrained_bert), "--output_dir", str(output_dir)),
    )
    results = read_json(output_dir / "all_results.json")
    assert 0.0 <= results["eval_exact_match"] <= 100.0 and 0.0 <= results["eval_f1"] <= 100.0
    state = read_json(output_dir / "trainer_state.json")
    assert results["eval_f1"] == pytest.approx(state["best_metric"])  # load_best_model_at_end on f1
    assert "question-answering" in (output_dir / "README.md").read_text()
    model = AutoModelForQuestionAnswering.from_pretrained(output_dir)
    assert type(model).__name__ == "MiniBertForQuestionAnswering"

    # The pipeline, on the saved folder, answers the evaluated dev questions with exactly the reported score.
    _, data_args, task_args, training_args, _ = parse_recipe(
        ARGUMENT_TYPES, [str(REPO_ROOT / TINY_RECIPE), "--model_name_or_path", str(output_dir)]
    )
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    questions = load_squad_split(
        data_args, "validation", tokenizer, task_args, data_args.max_eval_samples, training_args.seed
    )
    register_pipelines()
    answer = pipeline(QUESTION_ANSWERING_TASK, model=str(output_dir), device="cpu")
    answers = answer(
        question=list(questions["question"]),
        context=list(questions["context"]),
        doc_stride=task_args.doc_stride,
    )
    predictions = {row["id"]: found["answer"] for row, found in zip(questions, answers, strict=True)}
    score = load_metric("squad").compute(**squad_metric_inputs(predictions, questions))
    assert score["exact_match"] == pytest.approx(results["eval_exact_match"])
    assert score["f1"] == pytest.approx(results["eval_f1"])

    # predictions.json is the official SQuAD v1.1 prediction file of that evaluation: id -> answer text.
    written = read_json(output_dir / "predictions.json")
    assert written == predictions
    rescored = load_metric("squad").compute(**squad_metric_inputs(written, questions))
    assert rescored["f1"] == pytest.approx(results["eval_f1"])


def test_bad_rows_are_dropped_and_an_empty_split_is_an_error(pretrained_bert, tmp_path, caplog):
    good = [
        squad_row("g1", "Where did the cat sit?", CONTEXT, "on the red mat"),
        squad_row("g2", "Where did the dog run?", CONTEXT, "to the big house"),
        squad_row("g3", "What was on the hill?", CONTEXT, "the big house"),
    ]
    bad = [
        squad_row("b1", "Where is the fish?", CONTEXT, "in the sea", start=3),
        squad_row("b2", "  ", CONTEXT, "the red mat"),
        squad_row("b3", "What?", "", "", start=0),
    ]
    recipe = local_recipe(
        TINY_RECIPE,
        tmp_path / "local.yaml",
        train_file=str(write_jsonl(tmp_path / "train.jsonl", good + bad)),
        validation_file=str(write_jsonl(tmp_path / "validation.jsonl", good)),
        max_steps=2,
        eval_steps=1,
        save_steps=1,
    )
    model = ("--model_name_or_path", str(pretrained_bert))
    with caplog.at_level(logging.WARNING, logger="lmrecipes.data"):
        metrics = run_recipe(
            ARGUMENT_TYPES, finetune_question_answering, recipe, *model, "--output_dir", str(tmp_path / "out")
        )
    (summary,) = [
        record.getMessage()
        for record in caplog.records
        if "train split 'train': skipped" in record.getMessage()
    ]
    assert summary.startswith("train split 'train': skipped 3 of 6 examples (")
    assert "1 empty_question" in summary and "1 empty_context" in summary
    assert "1 answer_not_in_context" in summary and "first dropped ids ['b1', 'b2', 'b3']" in summary
    assert 0.0 <= metrics["eval_f1"] <= 100.0

    output_dir = tmp_path / "never"
    with pytest.raises(ValueError, match=r"train split 'train': no usable example left after skipping 3"):
        run_recipe(
            ARGUMENT_TYPES,
            finetune_question_answering,
            recipe,
            *model,
            *("--output_dir", str(output_dir)),
            *("--train_file", str(write_jsonl(tmp_path / "bad.jsonl", bad))),
        )
    assert not output_dir.exists()


def test_validation_windows_carry_the_training_labels(pretrained_bert):
    tokenizer = AutoTokenizer.from_pretrained(pretrained_bert)
    rows = Dataset.from_list(
        [
            squad_row("a", "Where did the dog run?", CONTEXT * 3, "to the big house"),
            squad_row("b", "Who sat?", CONTEXT, "cat"),
        ]
    )
    batch = rows.to_dict()
    args = {"tokenizer": tokenizer, "max_seq_length": 32, "doc_stride": 8, "pad_to_max_length": False}
    windows = prepare_validation_features(batch, **args)
    evaluation, training = prepare_eval_features(batch, **args), prepare_train_features(batch, **args)
    assert len(windows["input_ids"]) > 2  # the long context is cut into several windows
    assert windows["input_ids"] == evaluation["input_ids"] == training["input_ids"]
    assert windows["offset_mapping"] == evaluation["offset_mapping"]
    assert windows["example_id"] == evaluation["example_id"]
    assert windows["start_positions"] == training["start_positions"]
    assert windows["end_positions"] == training["end_positions"]
    # Some window holds the answer (a real span), others point at [CLS].
    assert any(start > 0 for start in windows["start_positions"]) and 0 in windows["start_positions"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"doc_stride": 64, "max_seq_length": 64}, "doc_stride must be in"),
        ({"n_best_size": 0}, "n_best_size"),
    ],
)
def test_window_arguments_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        QuestionAnsweringArguments(**fields)


def test_full_size_recipe_parses(tmp_path):
    """The recipe too long for the tests still names only real fields with valid values."""
    _, data_args, task_args, training_args, _ = parse_recipe(
        ARGUMENT_TYPES,
        [
            str(REPO_ROOT / "recipes/mini_bert/squad.yaml"),
            "--model_name_or_path",
            "unused",
            "--output_dir",
            str(tmp_path),
        ],
    )
    assert data_args.eval_split == "validation" and task_args.doc_stride < task_args.max_seq_length
