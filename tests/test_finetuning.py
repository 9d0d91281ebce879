"""Loading the folder a fine-tuning recipe names (model_name_or_path): a damaged or empty folder, and a tokenizer
larger than the model's vocabulary, fail before training in one line that names the folder and what is wrong."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import local_recipe, run_recipe, save_random_model, script_main, truncate, write_jsonl
from transformers import AutoModelForSequenceClassification

from lmrecipes.classification import ClassificationArguments
from lmrecipes.errors import RecipeError
from lmrecipes.finetuning import FinetuneArguments, FinetuneDataArguments, load_for_finetuning, load_tokenizer
from lmrecipes.question_answering import QuestionAnsweringArguments
from lmrecipes.training import RecipeTrainingArguments

SMALL_VOCAB = 40
CONTEXT = "the cat sat on the mat and the dog ran to the house."
ROWS = {
    "classification": [{"sentence": "the cat sat on the mat.", "label": i % 2} for i in range(8)],
    "qa": [
        {
            "id": f"q{i}",
            "title": "t",
            "question": "where did the cat sit?",
            "context": CONTEXT,
            "answers": {"text": ["on the mat"], "answer_start": [CONTEXT.find("on the mat")]},
        }
        for i in range(8)
    ],
}
RECIPES = {
    "classification": (
        "recipes/mini_bert/sst2_tiny.yaml",
        "finetune_classification",
        (FinetuneArguments, FinetuneDataArguments, ClassificationArguments, RecipeTrainingArguments),
    ),
    "qa": (
        "recipes/mini_bert/squad_tiny.yaml",
        "finetune_qa",
        (FinetuneArguments, FinetuneDataArguments, QuestionAnsweringArguments, RecipeTrainingArguments),
    ),
}


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory, wordpiece_tokenizer) -> Path:
    return save_random_model("mini_bert", tmp_path_factory.mktemp("mini_bert"), wordpiece_tokenizer)


@pytest.fixture
def folder_copy(bert_folder, tmp_path) -> Path:
    return Path(shutil.copytree(bert_folder, tmp_path / "pretrained"))


@pytest.mark.parametrize("task", ["classification", "qa"])
def test_a_tokenizer_larger_than_the_models_vocabulary_fails_before_training(
    task, tmp_path, wordpiece_tokenizer
):
    """It used to end in an IndexError in the embedding at the first training step."""
    small = save_random_model("mini_bert", tmp_path / "small", wordpiece_tokenizer, vocab_size=SMALL_VOCAB)
    recipe, script, argument_types = RECIPES[task]
    output_dir = tmp_path / "run"
    recipe_file = local_recipe(
        recipe,
        tmp_path / "recipe.yaml",
        train_file=str(write_jsonl(tmp_path / "train.jsonl", ROWS[task])),
        validation_file=str(write_jsonl(tmp_path / "validation.jsonl", ROWS[task])),
        output_dir=str(output_dir),
        max_steps=1,
        use_cpu=True,
    )
    with pytest.raises(RecipeError) as raised:
        run_recipe(argument_types, script_main(script), recipe_file, "--model_name_or_path", str(small))
    message = str(raised.value)
    assert message.startswith(
        f"The tokenizer of {str(small)!r} has {len(wordpiece_tokenizer)} tokens but the model's vocab_size is "
        f"{SMALL_VOCAB} (model of {str(small)!r})"
    )
    assert "\n" not in message
    assert not list(output_dir.glob("checkpoint-*"))  # nothing trained


def test_a_truncated_model_safetensors_is_named(folder_copy):
    truncate(folder_copy / "model.safetensors")
    args = FinetuneArguments(model_name_or_path=str(folder_copy))
    pattern = (
        f"model_name_or_path={re.escape(repr(str(folder_copy)))}: model.safetensors is damaged or truncated"
    )
    with pytest.raises(RecipeError, match=pattern):
        load_for_finetuning(AutoModelForSequenceClassification, args, num_labels=2)
    load_tokenizer(args)  # the tokenizer beside it is fine and still loads


@pytest.mark.parametrize("from_scratch", [False, True])
def test_an_empty_folder_holds_no_tokenizer_and_no_model(tmp_path, from_scratch):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = FinetuneArguments(model_name_or_path=str(empty), from_scratch=from_scratch)
    where = re.escape(f"model_name_or_path={str(empty)!r}")
    with pytest.raises(RecipeError, match=f"^{where}: the folder holds no tokenizer \\(it is empty\\)$"):
        load_tokenizer(args)
    with pytest.raises(RecipeError, match=f"^{where}: the folder holds no model \\(it is empty\\)$"):
        load_for_finetuning(AutoModelForSequenceClassification, args, num_labels=2)


def test_a_folder_with_only_a_model_or_only_a_tokenizer_says_which_is_missing(folder_copy, tmp_path):
    tokenizer_only = Path(shutil.copytree(folder_copy, tmp_path / "tokenizer_only"))
    for path in folder_copy.glob("tokenizer*"):
        path.unlink()
    for path in [*tokenizer_only.glob("*.safetensors"), tokenizer_only / "config.json"]:
        path.unlink()
    with pytest.raises(RecipeError, match="the folder holds no tokenizer \\(none of tokenizer.json"):
        load_tokenizer(FinetuneArguments(model_name_or_path=str(folder_copy)))
    with pytest.raises(RecipeError, match="the folder holds no model \\(no config.json in it\\)"):
        load_for_finetuning(
            AutoModelForSequenceClassification,
            FinetuneArguments(model_name_or_path=str(tokenizer_only)),
            num_labels=2,
        )
