"""Loading the folders a recipe names (`load_pretrained`): whatever is wrong with one fails in one line that names the
field, the folder and the file; pretraining's model_name_or_path goes through it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import save_random_model, truncate
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.activations import ReLUSquaredActivation

from lmrecipes.errors import MissingFileError, RecipeError
from lmrecipes.modeling import ModelArguments, build_config, build_pretraining_model, load_pretrained
from lmrecipes.recipe import parse_recipe


@pytest.fixture(scope="module")
def gpt_folder(tmp_path_factory, byte_bpe_tokenizer) -> Path:
    return save_random_model("mini_gpt", tmp_path_factory.mktemp("mini_gpt"), byte_bpe_tokenizer)


@pytest.fixture
def folder_copy(gpt_folder, tmp_path) -> Path:
    return Path(shutil.copytree(gpt_folder, tmp_path / "pretrained"))


def test_pretraining_from_a_truncated_checkpoint_names_the_file(folder_copy):
    """safetensors says "incomplete metadata, file not fully covered" and names no file."""
    truncate(folder_copy / "model.safetensors")
    args = ModelArguments(model_type="mini_gpt", model_name_or_path=str(folder_copy))
    with pytest.raises(RecipeError) as raised:
        build_pretraining_model(args, tokenizer=None)
    message = str(raised.value)
    assert message.startswith(
        f"model_name_or_path={str(folder_copy)!r}: model.safetensors is damaged or truncated ("
    )
    assert "incomplete metadata" in message and "\n" not in message


@pytest.mark.parametrize(
    "damage, auto_class, problem",
    [
        (lambda folder: truncate(folder / "config.json"), AutoConfig, "config.json is damaged or truncated"),
        (lambda folder: truncate(folder / "tokenizer.json"), AutoTokenizer, "tokenizer.json is damaged"),
        (
            lambda folder: (folder / "model.safetensors").unlink(),
            AutoModelForCausalLM,
            "the folder holds no model weights (no model.safetensors in it)",
        ),
    ],
    ids=["config.json", "tokenizer.json", "no weights"],
)
def test_a_damaged_file_is_named(folder_copy, damage, auto_class, problem):
    damage(folder_copy)
    with pytest.raises(RecipeError, match=re.escape(f"model_path={str(folder_copy)!r}: {problem}")):
        load_pretrained(auto_class, folder_copy, "model_path")


def test_a_path_that_is_no_folder_is_a_missing_file(tmp_path):
    missing = tmp_path / "outputs" / "never-trained"
    with pytest.raises(
        MissingFileError, match=re.escape(f"model_name_or_path={str(missing)!r} is not a folder")
    ):
        load_pretrained(AutoTokenizer, missing, "model_name_or_path")


def test_a_sound_folder_loads_as_from_pretrained_does(gpt_folder):
    model = load_pretrained(AutoModelForCausalLM, gpt_folder, "model_path")
    assert model.config.name_or_path == str(gpt_folder)
    tokenizer = load_pretrained(AutoTokenizer, gpt_folder, "model_path", padding_side="left")
    assert tokenizer.padding_side == "left"


@pytest.mark.parametrize(
    "sizes",
    [
        "model_type: lstm_lm\nhidden_size: 16\nembedding_size: 16\n",
        "model_type: mini_gpt\nhidden_size: 16\nnum_attention_heads: 2\n",
    ],
)
def test_the_recipes_adaptive_softmax_cutoffs_reach_the_config(sizes, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"{sizes}tie_word_embeddings: false\ntokenizer_vocab_size: 300\nadaptive_softmax_cutoffs: [20, 100]\n"
    )
    model_args, _ = parse_recipe((ModelArguments,), [str(recipe)])
    model = build_pretraining_model(model_args, tokenizer=None)
    assert model.config.adaptive_softmax_cutoffs == [20, 100]
    assert model.get_output_embeddings() is None  # the adaptive head replaced the full output layer
    overridden, _ = parse_recipe((ModelArguments,), [str(recipe), "--adaptive_softmax_cutoffs", "50", "200"])
    assert build_config(overridden, tokenizer=None).adaptive_softmax_cutoffs == [50, 200]


@pytest.mark.parametrize(
    "sizes,field",
    [
        ("model_type: lstm_lm\nhidden_size: 16\nnum_attention_heads: 2\n", "num_attention_heads"),
        ("model_type: lstm_lm\nhidden_size: 16\nhidden_act: relu2\n", "hidden_act"),
        ("model_type: mini_gpt\nhidden_size: 16\nembedding_size: 16\n", "embedding_size"),
        ("model_type: mini_gpt\nhidden_size: 16\nsparse_prediction: true\n", "sparse_prediction"),
    ],
)
def test_a_model_field_the_family_lacks_is_refused_by_name(sizes, field, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"{sizes}tokenizer_vocab_size: 300\n")
    model_args, _ = parse_recipe((ModelArguments,), [str(recipe)])
    with pytest.raises(RecipeError, match=rf"^{field}: \w+ models have no such field; remove it$"):
        build_config(model_args, tokenizer=None)


@pytest.mark.parametrize("model_type", ["mini_bert", "mini_gpt"])
def test_the_recipes_hidden_act_reaches_the_model(model_type, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_type: {model_type}\nhidden_size: 16\nnum_attention_heads: 2\nintermediate_size: 32\n"
        "tokenizer_vocab_size: 300\nhidden_act: relu2\n"
    )
    model_args, _ = parse_recipe((ModelArguments,), [str(recipe)])
    model = build_pretraining_model(model_args, tokenizer=None)
    assert model.config.hidden_act == "relu2"
    assert any(isinstance(module, ReLUSquaredActivation) for module in model.modules())
    with pytest.raises(RecipeError, match="hidden_act"):  # the config's own check, with the field's name
        build_config(
            parse_recipe((ModelArguments,), [str(recipe), "--hidden_act", "nope"])[0], tokenizer=None
        )


def test_a_continued_model_keeps_its_architecture_and_a_recipe_that_changes_it_is_refused(
    gpt_folder, tmp_path
):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_type: mini_gpt\nmodel_name_or_path: {gpt_folder}\n")
    saved = AutoConfig.from_pretrained(gpt_folder)
    same, _ = parse_recipe((ModelArguments,), [str(recipe), "--hidden_size", str(saved.hidden_size)])
    assert build_pretraining_model(same, tokenizer=None).config.hidden_act == saved.hidden_act
    for field, value in (("hidden_act", "relu2"), ("num_hidden_layers", str(saved.num_hidden_layers + 1))):
        changed, _ = parse_recipe((ModelArguments,), [str(recipe), f"--{field}", value])
        with pytest.raises(RecipeError, match=rf"^{field}: .* holds a model with {field}="):
            build_pretraining_model(changed, tokenizer=None)
    other_family, _ = parse_recipe((ModelArguments,), [str(recipe), "--sparse_prediction", "true"])
    with pytest.raises(RecipeError, match="^sparse_prediction: mini_gpt models have no such field"):
        build_pretraining_model(other_family, tokenizer=None)


def test_the_recipes_sparse_prediction_reaches_a_new_and_a_loaded_mini_bert(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model_type: mini_bert\nhidden_size: 16\nnum_attention_heads: 2\nintermediate_size: 32\n"
        "tokenizer_vocab_size: 300\nsparse_prediction: true\n"
    )
    model_args, _ = parse_recipe((ModelArguments,), [str(recipe)])
    new = build_pretraining_model(model_args, tokenizer=None)
    assert new.config.sparse_prediction is True
    new.save_pretrained(tmp_path / "base")
    continued, _ = parse_recipe(
        (ModelArguments,),
        [str(recipe), "--model_name_or_path", str(tmp_path / "base"), "--sparse_prediction", "false"],
    )
    assert build_pretraining_model(continued, tokenizer=None).config.sparse_prediction is False
