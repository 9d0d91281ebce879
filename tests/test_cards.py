"""Model cards: Hub metadata that parses back with huggingface_hub, metrics from all_results.json, the loss curve,
the recipe without tokens, and a usage snippet that runs for every head the families have."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from matplotlib.image import imread

from lmrecipes.cards import (
    LOSS_CURVE_FILENAME,
    build_model_card,
    build_model_card_for_folder,
    load_recipe,
    load_results,
    save_recipe,
    usage_snippet,
)
from lmrecipes.families import register_families
from lmrecipes.models.lstm_lm import LSTMLMConfig, LSTMLMForCausalLM, LSTMLMForSequenceClassification
from lmrecipes.models.mini_bert import (
    MiniBertConfig,
    MiniBertForMaskedLM,
    MiniBertForQuestionAnswering,
    MiniBertForSequenceClassification,
    MiniBertForTokenClassification,
)
from lmrecipes.models.mini_gpt import MiniGPTConfig, MiniGPTForCausalLM, MiniGPTForSequenceClassification

RECIPE = {
    "model_type": "mini_gpt",
    "dataset_name": "Salesforce/wikitext",
    "dataset_config_name": "wikitext-2-v1",
    "eval_split": "validation",
    "learning_rate": 0.001,
    "license": "mit",
    "hub_token": "hf_doNotShowThisTokenAnywhere0123456789",
}
RESULTS = {
    "epoch": 1.0,
    "eval_loss": 4.25,
    "eval_perplexity": 70.105,
    "eval_accuracy": 0.31,
    "eval_runtime": 0.52,
    "eval_samples_per_second": 120.0,
    "test_f1": 0.5,
    "train_loss": 5.5,
    "train_runtime": 3.0,
}
LOG_HISTORY = [
    {"loss": 6.0, "step": 1, "epoch": 0.25},
    {"loss": 5.5, "step": 2, "epoch": 0.5},
    {"eval_loss": 5.0, "eval_accuracy": 0.2, "step": 2, "epoch": 0.5},
    {"loss": 5.0, "step": 3, "epoch": 0.75},
    {"eval_loss": 4.25, "eval_accuracy": 0.31, "step": 4, "epoch": 1.0},
]
CAUSAL_CONFIG = {
    "model_type": "mini_gpt",
    "architectures": ["MiniGPTForCausalLM"],
    "max_position_embeddings": 64,
}


@pytest.fixture
def output_dir(tmp_path) -> Path:
    """What the Trainer leaves in an output folder, minus the weights (the card does not read them)."""
    folder = tmp_path / "output"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CAUSAL_CONFIG))
    (folder / "all_results.json").write_text(json.dumps(RESULTS))
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": LOG_HISTORY}))
    return folder


def test_metadata_parses_back_and_holds_the_metrics_of_all_results(output_dir):
    build_model_card(output_dir, RECIPE, repo_id="alice/tiny-gpt")

    card = ModelCard.load(output_dir / "README.md")  # parses the YAML block and the model-index
    data = card.data
    assert data.library_name == "transformers"
    assert data.license == "mit"
    assert {"lmrecipes", "mini_gpt", "custom_code", "text-generation"} <= set(data.tags)
    assert data.datasets == ["Salesforce/wikitext"]
    assert data.pipeline_tag == "text-generation"
    assert data.model_name == "tiny-gpt"
    metrics = {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    assert metrics == {
        ("validation", "loss"): RESULTS["eval_loss"],
        ("validation", "perplexity"): RESULTS["eval_perplexity"],
        ("validation", "accuracy"): RESULTS["eval_accuracy"],
        ("test", "f1"): RESULTS["test_f1"],
    }  # runtimes, throughput, epoch and train_* numbers describe the run, not the model
    for result in data.eval_results:
        assert (result.task_type, result.dataset_type, result.dataset_config) == (
            "text-generation",
            "Salesforce/wikitext",
            "wikitext-2-v1",
        )
    # The body shows every number of all_results.json.
    for key in RESULTS:
        assert f"| {key} |" in card.text


def test_loss_curve_is_a_png_plotted_from_the_log_history(output_dir):
    build_model_card(output_dir, RECIPE)
    curve = output_dir / LOSS_CURVE_FILENAME
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(curve).shape
    assert width > 300 and height > 200
    assert f"![Training loss]({LOSS_CURVE_FILENAME})" in ModelCard.load(output_dir / "README.md").text

    (output_dir / "trainer_state.json").write_text(json.dumps({"log_history": []}))
    curve.unlink()
    build_model_card(output_dir, RECIPE)
    assert not curve.exists()
    assert "No training losses were logged." in (output_dir / "README.md").read_text()


def test_the_last_evaluations_samples_are_shown(output_dir):
    build_model_card(output_dir, RECIPE)
    assert "### Samples" not in (output_dir / "README.md").read_text()  # none logged

    samples = [
        {"eval_sample_0": "The old sample", "step": 2},
        {"eval_sample_0": "The cat sat", "eval_sample_1": "Once upon", "step": 4},
    ]
    (output_dir / "trainer_state.json").write_text(json.dumps({"log_history": LOG_HISTORY + samples}))
    text = build_model_card(output_dir, RECIPE).text
    assert "### Samples\n\nAt step 4 (top-k sampling, seeded):\n\n```text\nThe cat sat\n```" in text
    assert "```text\nOnce upon\n```" in text and "The old sample" not in text


def test_recipe_is_shown_and_saved_without_tokens(output_dir):
    card = build_model_card(output_dir, RECIPE)

    shown = yaml.safe_load(card.text.split("```yaml\n", 1)[1].split("```", 1)[0])
    expected = {key: value for key, value in RECIPE.items() if key != "hub_token"}
    assert shown == expected
    assert load_recipe(output_dir) == expected  # recipe.yaml, for cards rebuilt at push time
    for path in output_dir.iterdir():
        assert b"hf_doNotShowThisToken" not in path.read_bytes(), path.name


def test_results_default_to_all_results_json_and_explicit_results_win(output_dir):
    card = build_model_card(output_dir, RECIPE)
    assert {r.metric_type for r in card.data.eval_results} == {"loss", "perplexity", "accuracy", "f1"}

    card = build_model_card(output_dir, RECIPE, {"eval_exact_match": 71.5, "eval_f1": 80.25})
    assert {(r.metric_type, r.metric_value) for r in card.data.eval_results} == {
        ("exact_match", 71.5),
        ("f1", 80.25),
    }


def test_checkpoint_card_uses_its_trainer_state_and_the_recipe_of_its_run(output_dir, tmp_path):
    save_recipe(output_dir, RECIPE)
    checkpoint = output_dir / "checkpoint-2"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps(CAUSAL_CONFIG))
    (checkpoint / "trainer_state.json").write_text(json.dumps({"log_history": LOG_HISTORY[:3]}))
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}

    assert load_results(checkpoint) == LOG_HISTORY[2]  # its latest evaluation, not the final all_results.json
    staging = tmp_path / "staging"
    files = build_model_card_for_folder(checkpoint, repo_id="alice/step-2", save_dir=staging)

    assert set(files) == {"README.md", LOSS_CURVE_FILENAME}
    card = ModelCard.load(files["README.md"])
    assert {(r.metric_type, r.metric_value) for r in card.data.eval_results} == {
        ("loss", 5.0),
        ("accuracy", 0.2),
    }
    assert card.data.datasets == ["Salesforce/wikitext"]  # from the recipe of the run around the checkpoint
    assert 'repo_id = "alice/step-2"' in card.text
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before  # written to staging only


def test_causal_snippet_keeps_generation_inside_the_position_table():
    assert "max_new_tokens=8," in usage_snippet("alice/x", {**CAUSAL_CONFIG, "max_position_embeddings": 32})
    assert "max_new_tokens=20," in usage_snippet(
        "alice/x", {**CAUSAL_CONFIG, "max_position_embeddings": 1024}
    )
    lstm = {"model_type": "lstm_lm", "architectures": ["LSTMLMForCausalLM"]}  # no position table
    assert "max_new_tokens=20," in usage_snippet("alice/x", lstm)


# --------------------------------------------------------------------------------------------- snippets that run


def _tiny(family: str, tokenizer) -> dict:
    common = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, "num_labels": 3}
    sizes = {"hidden_size": 32, "num_hidden_layers": 2}
    attention = {"num_attention_heads": 4, "intermediate_size": 37, "max_position_embeddings": 64}
    if family == "lstm_lm":
        return LSTMLMConfig(**common, **sizes, embedding_size=24, eos_token_id=tokenizer.eos_token_id)
    if family == "mini_gpt":
        return MiniGPTConfig(**common, **sizes, **attention, eos_token_id=tokenizer.eos_token_id)
    return MiniBertConfig(**common, **sizes, **attention)


HEADS = {
    "mini_gpt causal LM": (MiniGPTForCausalLM, "byte_bpe"),
    "mini_gpt classifier": (MiniGPTForSequenceClassification, "byte_bpe"),
    "lstm_lm causal LM": (LSTMLMForCausalLM, "byte_bpe"),
    "lstm_lm classifier": (LSTMLMForSequenceClassification, "byte_bpe"),
    "mini_bert masked LM": (MiniBertForMaskedLM, "wordpiece"),
    "mini_bert classifier": (MiniBertForSequenceClassification, "wordpiece"),
    "mini_bert token classifier": (MiniBertForTokenClassification, "wordpiece"),
    "mini_bert question answering": (MiniBertForQuestionAnswering, "wordpiece"),
}


@pytest.mark.parametrize("head", list(HEADS))
def test_usage_snippet_runs_for_every_head(head, tmp_path, monkeypatch, request):
    import transformers.dynamic_module_utils

    monkeypatch.setattr(transformers.dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    register_families()  # save_pretrained then writes auto_map and copies the code, as in the training scripts
    model_class, tokenizer_kind = HEADS[head]
    tokenizer = request.getfixturevalue(f"{tokenizer_kind}_tokenizer")
    torch.manual_seed(0)
    folder = tmp_path / "output"
    model = model_class(_tiny(model_class.config_class.model_type, tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)

    card = build_model_card(folder, {"dataset_name": "stanfordnlp/sst2"}, {"eval_loss": 1.0})
    snippet = card.text.split("```python\n", 1)[1].split("```", 1)[0]
    assert (
        f'repo_id = "{folder.resolve()}"' in snippet
    )  # without a Hub id, the card points at the folder itself
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(snippet, {"__name__": "__main__"})
    output = printed.getvalue().strip()

    labels = set(model.config.id2label.values())
    if "causal LM" in head:
        assert output.startswith("The meaning of life is") and len(output) > len("The meaning of life is")
    elif head.endswith(" classifier") and "token" not in head:
        assert output in labels
    elif "token classifier" in head:
        assert {label for _, label in ast.literal_eval(output)} <= labels
    elif "masked LM" in head:  # the token that fills the mask
        assert output in {tokenizer.decode([token_id]) for token_id in range(len(tokenizer))}
    else:  # question answering: a span of the question + context (may be empty for an untrained model)
        context = "Where does Sarah live?", "My name is Sarah and I live in London."
        assert output in tokenizer.decode(tokenizer(*context)["input_ids"])
    shutil.rmtree(folder)
