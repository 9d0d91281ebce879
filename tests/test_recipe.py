"""The recipe parser: YAML plus command-line overrides into the scripts' dataclasses."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO_ROOT

from lmrecipes.data import DataArguments
from lmrecipes.modeling import ModelArguments
from lmrecipes.recipe import RecipeError, parse_recipe
from lmrecipes.training import RecipeTrainingArguments

PRETRAINING_TYPES = (ModelArguments, DataArguments, RecipeTrainingArguments)


def test_help_lists_the_fields_with_the_recipes_values_as_defaults(capsys):
    recipe = str(REPO_ROOT / "recipes/mini_gpt/shakespeare_quick.yaml")
    with pytest.raises(SystemExit) as exit_info:
        parse_recipe(PRETRAINING_TYPES, [recipe, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help lines
    assert "--block_size BLOCK_SIZE" in text and "--learning_rate LEARNING_RATE" in text
    assert "(default: karpathy/tiny_shakespeare)" in text  # the recipe's dataset, not the dataclass's None


def test_help_works_through_a_script_without_a_recipe():
    run = subprocess.run(
        [sys.executable, "scripts/finetune_qa.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--doc_stride" in run.stdout and "--model_name_or_path" in run.stdout


def test_none_on_the_command_line_unsets_a_recipe_field(tmp_path):
    recipe = tmp_path / "hub.yaml"
    recipe.write_text("dataset_name: karpathy/tiny_shakespeare\nblock_size: 16\n")
    train = tmp_path / "train.txt"
    train.write_text("to be or not to be\n")
    _, data_args, _, merged = parse_recipe(
        PRETRAINING_TYPES, [str(recipe), "--dataset_name", "None", "--train_file", str(train)]
    )
    assert data_args.dataset_name is None and data_args.train_file == str(train)
    assert "dataset_name" not in merged and merged["train_file"] == str(train)
    _, data_args, _, _ = parse_recipe(
        PRETRAINING_TYPES, [str(recipe), "--dataset_name=null", "--train_file", str(train)]
    )
    assert data_args.dataset_name is None
    # A field whose default is not None keeps the word as its value (and its type check).
    with pytest.raises(SystemExit):  # argparse: invalid int value: 'None'
        parse_recipe(PRETRAINING_TYPES, [str(recipe), "--block_size", "None"])


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("block_size: 16\nlearning_rate: [1e-3\n")
    with pytest.raises(RecipeError, match=r"broken.yaml: line \d+ not valid YAML"):
        parse_recipe(PRETRAINING_TYPES, [str(recipe)])
