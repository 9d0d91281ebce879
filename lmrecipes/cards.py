"""Model cards for trained models: README.md with Hub metadata, results, loss curve, recipe and a usage snippet.

Built from the files of an output folder alone (recipe.yaml, all_results.json, trainer_state.json, config.json)
through `huggingface_hub.ModelCardData`, so a push can rebuild it for its repo; docs/cards.md shows the flow.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from lmrecipes.families import FAMILIES
from lmrecipes.secrets import scrub_secrets

LMRECIPES_TAG = "lmrecipes"
RECIPE_FILENAME = "recipe.yaml"
RESULTS_FILENAME = "all_results.json"
TRAINER_STATE_FILENAME = "trainer_state.json"
LOSS_CURVE_FILENAME = "training_loss.png"
CARD_FILENAME = "README.md"
DEFAULT_LICENSE = "apache-2.0"  # the project's licence; a recipe's `license` field overrides it

# Head class suffix -> (Auto class, Hub pipeline tag). The usage snippet and `model-index` task follow from it.
TASKS = {
    "ForCausalLM": ("AutoModelForCausalLM", "text-generation"),
    "LMHeadModel": ("AutoModelForCausalLM", "text-generation"),
    "ForMaskedLM": ("AutoModelForMaskedLM", "fill-mask"),
    "ForSequenceClassification": ("AutoModelForSequenceClassification", "text-classification"),
    "ForTokenClassification": ("AutoModelForTokenClassification", "token-classification"),
    "ForQuestionAnswering": ("AutoModelForQuestionAnswering", "question-answering"),
    "EncoderDecoderModel": ("EncoderDecoderModel", "translation"),
}
BASE_TASK = ("AutoModel", "feature-extraction")

# Numbers in all_results.json that describe the run rather than the model's quality: kept out of model-index.
NON_METRIC_SUFFIXES = (
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "samples",
    "epoch",
    "total_flos",
    "model_preparation_time",
)
SPLIT_PREFIXES = {"eval_": "validation", "test_": "test", "predict_": "test"}

USAGE_LOAD = """\
import torch
from transformers import {auto_class}, AutoTokenizer

repo_id = "{repo_id}"
tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
model = {auto_class}.from_pretrained(repo_id, trust_remote_code=True)
model.eval()
"""
USAGE_TASK = {
    "text-generation": """
inputs = tokenizer("The meaning of life is", return_tensors="pt")
with torch.no_grad():
    output_ids = model.generate(**inputs, max_new_tokens={max_new_tokens}, do_sample=False)
print(tokenizer.decode(output_ids[0], skip_special_tokens=True))
""",
    "fill-mask": """
inputs = tokenizer(f"The capital of France is {tokenizer.mask_token}.", return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
mask_position = (inputs["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0]
print(tokenizer.decode(logits[0, mask_position].argmax()))
""",
    "text-classification": """
inputs = tokenizer("A delightful film, full of wit and warmth.", return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
print(model.config.id2label[logits.argmax(-1).item()])
""",
    "token-classification": """
inputs = tokenizer("My name is Sarah and I live in London", return_tensors="pt")
with torch.no_grad():
    predictions = model(**inputs).logits.argmax(-1)[0].tolist()
tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
print([(token, model.config.id2label[label]) for token, label in zip(tokens, predictions)])
""",
    "question-answering": """
question, context = "Where does Sarah live?", "My name is Sarah and I live in London."
inputs = tokenizer(question, context, return_tensors="pt")
with torch.no_grad():
    outputs = model(**inputs)
start, end = outputs.start_logits.argmax().item(), outputs.end_logits.argmax().item()
print(tokenizer.decode(inputs["input_ids"][0, start : end + 1]))
""",
    "translation": """
inputs = tokenizer("Ein Hund rennt über eine grüne Wiese.", return_tensors="pt")
with torch.no_grad():
    output_ids = model.generate(**inputs, num_beams=4, max_new_tokens=40)
print(target_tokenizer.decode(output_ids[0], skip_special_tokens=True))
""",
    "feature-extraction": """
inputs = tokenizer("Hello world", return_tensors="pt")
with torch.no_grad():
    hidden_states = model(**inputs).last_hidden_state
print(hidden_states.shape)
""",
}


# --------------------------------------------------------------------------------------------- inputs


def save_recipe(output_dir: str | Path, recipe: Mapping[str, Any]) -> Path:
    """Write the recipe, without token-like fields, as recipe.yaml (cards built at push time read it back)."""
    path = Path(output_dir) / RECIPE_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(scrub_secrets(dict(recipe)), sort_keys=False), encoding="utf-8")
    return path


def load_recipe(folder: str | Path) -> dict | None:
    """recipe.yaml of an output folder; for a `checkpoint-*` folder, the one of the output folder around it."""
    folder = Path(folder)
    candidates = [folder / RECIPE_FILENAME]
    if folder.name.startswith("checkpoint-"):
        candidates.append(folder.parent / RECIPE_FILENAME)
    for candidate in candidates:
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
    return None


def load_log_history(folder: str | Path) -> list[dict]:
    path = Path(folder) / TRAINER_STATE_FILENAME
    if not path.is_file():
        return []
    return json.loads(path.read_text(encoding="utf-8")).get("log_history", [])


def load_results(folder: str | Path) -> dict[str, Any]:
    """all_results.json, or for a checkpoint (which has none) its latest evaluation in trainer_state.json."""
    path = Path(folder) / RESULTS_FILENAME
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    evaluations = [entry for entry in load_log_history(folder) if any(k.startswith("eval_") for k in entry)]
    return dict(evaluations[-1]) if evaluations else {}


def _dataset_id(value: str) -> str:
    """A Hub dataset id from a recipe value, which may be a path into the local mirror (LMRECIPES_DATA_MIRROR)."""
    mirror = os.environ.get("LMRECIPES_DATA_MIRROR")
    if mirror and (os.path.isabs(value) or value.startswith(".")):
        try:
            return Path(value).resolve().relative_to(Path(mirror).resolve()).as_posix()
        except ValueError:
            pass
    return value


def dataset_of(recipe: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(Hub id, config name) of the recipe's dataset; None for local files, which have no Hub id."""
    name = recipe.get("dataset_name")
    return (_dataset_id(str(name)), recipe.get("dataset_config_name")) if name else None


# --------------------------------------------------------------------------------------------- pieces of the card


def task_of(config: Mapping[str, Any]) -> tuple[str, str]:
    """(Auto class, pipeline tag) for the head saved in config.json."""
    for architecture in config.get("architectures") or []:
        for suffix, task in TASKS.items():
            if architecture.endswith(suffix):
                return task
    return BASE_TASK


USAGE_LOAD_ENCODER_DECODER = """\
import torch
from transformers import AutoConfig, AutoTokenizer, EncoderDecoderModel, {auto_classes}
from transformers.dynamic_module_utils import get_class_from_dynamic_module

repo_id = "{repo_id}"
# transformers resolves an EncoderDecoderModel's sub-configs by model type only, never through auto_map:
# register the repo's own code for them first.
for family, config_class, model_class, auto_class in {sub_models}:
    config_class = get_class_from_dynamic_module(f"configuration_{{family}}.{{config_class}}", repo_id)
    AutoConfig.register(family, config_class, exist_ok=True)
    auto_class.register(
        config_class, get_class_from_dynamic_module(f"modeling_{{family}}.{{model_class}}", repo_id), exist_ok=True
    )
model = EncoderDecoderModel.from_pretrained(repo_id).eval()
tokenizer = AutoTokenizer.from_pretrained(repo_id)
target_tokenizer = {target_tokenizer}
"""


def _encoder_decoder_load(repo_id: str, config: Mapping[str, Any], separate_target_tokenizer: bool) -> str:
    sub_models = []
    for side, auto_class in (("encoder", "AutoModel"), ("decoder", "AutoModelForCausalLM")):
        family = config[side]["model_type"]
        record = FAMILIES[family]
        model_class = next(
            model.__name__ for auto, model in record.heads.items() if auto.__name__ == auto_class
        )
        sub_models.append((family, record.config_class.__name__, model_class, auto_class))
    listed = "[\n    " + ",\n    ".join(f'("{f}", "{c}", "{m}", {a})' for f, c, m, a in sub_models) + ",\n]"
    return USAGE_LOAD_ENCODER_DECODER.format(
        auto_classes=", ".join(sorted({a for *_, a in sub_models})),
        repo_id=repo_id,
        sub_models=listed,
        target_tokenizer='AutoTokenizer.from_pretrained(repo_id, subfolder="decoder_tokenizer")'
        if separate_target_tokenizer
        else "tokenizer",
    )


def usage_snippet(repo_id: str, config: Mapping[str, Any], separate_target_tokenizer: bool = False) -> str:
    """Python that downloads the model with the Auto classes and `trust_remote_code=True` and runs it once."""
    auto_class, pipeline_tag = task_of(config)
    if pipeline_tag == "translation":
        return _encoder_decoder_load(repo_id, config, separate_target_tokenizer) + USAGE_TASK[pipeline_tag]
    task = USAGE_TASK[pipeline_tag]
    if pipeline_tag == "text-generation":
        # Stay well inside a learned position table (tiny recipes have short ones); 20 tokens otherwise.
        max_positions = config.get("max_position_embeddings") or config.get("n_positions")
        task = task.format(max_new_tokens=min(20, max_positions // 4) if max_positions else 20)
    return USAGE_LOAD.format(auto_class=auto_class, repo_id=repo_id) + task


def evaluation_metrics(
    results: Mapping[str, Any], eval_split: str = "validation"
) -> list[tuple[str, str, float]]:
    """(split, metric, value) for each quality metric in all_results.json-style results, e.g. eval_accuracy.

    `eval_` metrics are on `eval_split` (the recipe's), `test_`/`predict_` ones on test.
    """
    metrics = []
    for key, value in results.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            continue
        split, name = next(
            ((s, key[len(p) :]) for p, s in SPLIT_PREFIXES.items() if key.startswith(p)), (None, key)
        )
        if split is None and name != "perplexity":  # train_* numbers describe training, not the model
            continue
        if name.endswith(NON_METRIC_SUFFIXES) or name.startswith("mem_"):
            continue
        metrics.append((eval_split if split in (None, "validation") else split, name, float(value)))
    return metrics


def plot_training_loss(log_history: list[Mapping[str, Any]], path: str | Path) -> bool:
    """Plot training (and evaluation) loss against the step; False when there are no logged losses."""
    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    evaluation = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    if not train and not evaluation:
        return False
    # The object-oriented API with no pyplot: no global figure state, and the Agg canvas needs no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train, strict=True), label="training loss")
    if evaluation:
        axes.plot(*zip(*evaluation, strict=True), marker="o", label="evaluation loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, format="png")
    return True


def last_samples(log_history: list[Mapping[str, Any]]) -> tuple[int, list[str]] | None:
    """The step and texts of the last evaluation's sample generations (eval_sample_0, ...), if any were logged."""
    for entry in reversed(log_history):
        samples = [value for key, value in sorted(entry.items()) if key.startswith("eval_sample_")]
        if samples:
            return entry.get("step", 0), samples
    return None


def _samples_section(log_history: list[Mapping[str, Any]]) -> str:
    found = last_samples(log_history)
    if found is None:
        return ""
    step, samples = found
    blocks = "\n\n".join(f"```text\n{text}\n```" for text in samples)
    return f"\n### Samples\n\nAt step {step} (top-k sampling, seeded):\n\n{blocks}\n"


def _metrics_table(results: Mapping[str, Any]) -> str:
    rows = []
    for key, value in sorted(results.items()):
        rows.append(f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |")
    return "\n".join(["| Metric | Value |", "| --- | --- |", *rows]) if rows else "No results were recorded."


# --------------------------------------------------------------------------------------------- the card


def build_model_card(
    output_dir: str | Path,
    recipe: Mapping[str, Any] | None,
    results: Mapping[str, Any] | None = None,
    *,
    repo_id: str | None = None,
    save_dir: str | Path | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
) -> ModelCard:
    """Write README.md and training_loss.png (and recipe.yaml, tokens removed) for the model in `output_dir`.

    output_dir: folder with config.json (and trainer_state.json for the loss curve).
    recipe: the recipe the model was trained with; token-like fields are removed before it is shown.
    results: final metrics, e.g. {"eval_loss": 3.2, "eval_perplexity": 24.5}; read from all_results.json if None.
    repo_id: the Hub repo the card will live in (used by the usage snippet); defaults to the recipe's
        `hub_model_id`, else the local folder path, so the snippet runs wherever the card is.
    save_dir: where to write the files, default `output_dir`.
    license: Hub license id; defaults to the recipe's `license` if it has one, else apache-2.0.
    tags: more Hub tags, after lmrecipes, the model type, custom_code and the task.
    """
    output_dir = Path(output_dir)
    save_dir = Path(save_dir) if save_dir is not None else output_dir
    save_dir.mkdir(parents=True, exist_ok=True)
    if recipe and save_dir == output_dir:
        save_recipe(output_dir, recipe)  # so that a card rebuilt at push time shows the same recipe
    recipe = scrub_secrets(dict(recipe or {}))
    results = dict(results) if results is not None else load_results(output_dir)
    config = json.loads((output_dir / "config.json").read_text(encoding="utf-8"))
    model_type = config.get("model_type", "model")
    auto_class, pipeline_tag = task_of(config)
    repo_id = repo_id or recipe.get("hub_model_id") or str(output_dir.resolve())
    model_name = repo_id.rstrip("/").split("/")[-1]

    dataset = dataset_of(recipe)
    eval_split = recipe.get("eval_split") or "validation"
    eval_results = [  # model-index form; it needs a dataset, so a run on local files has none
        EvalResult(
            task_type=pipeline_tag,
            dataset_type=dataset[0],
            dataset_name=dataset[0],
            dataset_config=dataset[1],
            dataset_split=split,
            metric_type=metric,
            metric_name=metric.replace("_", " "),
            metric_value=value,
        )
        for split, metric, value in (evaluation_metrics(results, eval_split) if dataset else [])
    ]
    card_data = ModelCardData(
        library_name="transformers",
        license=license or recipe.get("license") or DEFAULT_LICENSE,
        tags=[LMRECIPES_TAG, model_type, "custom_code", pipeline_tag, *(tags or recipe.get("tags") or [])],
        datasets=[dataset[0]] if dataset else None,
        pipeline_tag=pipeline_tag,
        model_name=model_name,
        eval_results=eval_results or None,
    )

    log_history = load_log_history(output_dir)
    has_curve = plot_training_loss(log_history, save_dir / LOSS_CURVE_FILENAME)
    curve = f"![Training loss]({LOSS_CURVE_FILENAME})" if has_curve else "No training losses were logged."
    trained_on = f" on `{dataset[0]}`" + (f" ({dataset[1]})" if dataset[1] else "") if dataset else ""
    recipe_yaml = yaml.safe_dump(recipe, sort_keys=False).strip() if recipe else "# not recorded"
    body = f"""
# {model_name}

A `{model_type}` model for {pipeline_tag}, trained with lmrecipes{trained_on}.

The repo is self-contained: the configuration and modeling code travel with the safetensors weights, so the model
loads with the transformers Auto classes and `trust_remote_code=True`, without installing lmrecipes.

## Usage

```python
{usage_snippet(repo_id, config, (output_dir / "decoder_tokenizer").is_dir()).strip()}
```

## Evaluation results

{_metrics_table(results)}

## Training

{curve}
{_samples_section(log_history)}
### Recipe

```yaml
{recipe_yaml}
```
"""
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")
    card.save(save_dir / CARD_FILENAME)
    return card


def should_rebuild_card(folder: str | Path) -> bool:
    """True when the folder has no README.md or one written by lmrecipes; a user's own card is left alone."""
    path = Path(folder) / CARD_FILENAME
    if not path.is_file():
        return True
    tags = ModelCard.load(path, ignore_metadata_errors=True).data.get("tags") or []
    return LMRECIPES_TAG in tags


def build_model_card_for_folder(folder: str | Path, repo_id: str, save_dir: str | Path) -> dict[str, Path]:
    """Build the card for `folder` as it will be pushed to `repo_id`, from the files in the folder alone.

    Writes into `save_dir` (the folder itself is left untouched) and returns {path in repo: file}.
    """
    folder, save_dir = Path(folder), Path(save_dir)
    build_model_card(folder, load_recipe(folder), load_results(folder), repo_id=repo_id, save_dir=save_dir)
    return {
        path.name: path
        for path in (save_dir / CARD_FILENAME, save_dir / LOSS_CURVE_FILENAME)
        if path.is_file()
    }
