"""Shared by the fine-tuning tests: a tiny pretraining run to fine-tune from, and in-process recipe runs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from launch import REPO_ROOT, accelerate_launch

from lmrecipes.recipe import load_recipe, parse_recipe


def pretrain_tiny(family: str, output_dir: Path, corpus: list[str], max_steps: int = 10) -> Path:
    """The family's tiny pretraining recipe through the real script (`accelerate launch scripts/pretrain.py`), on a
    small local corpus instead of WikiText: the fine-tuning tests then chain the real scripts end to end.

    Same model sizes and tokenizer as recipes/<family>/tiny.yaml; the corpus is a few hundred lines of the
    fine-tuning data, so the tokenizer is trained (and the model pretrained) on in-domain text in a few seconds.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    train_file, validation_file = output_dir / "corpus_train.txt", output_dir / "corpus_validation.txt"
    train_file.write_text("\n".join(corpus) + "\n", encoding="utf-8")
    validation_file.write_text("\n".join(corpus[:50]) + "\n", encoding="utf-8")
    recipe_file = local_recipe(
        f"recipes/{family}/tiny.yaml",
        output_dir / "pretrain_recipe.yaml",
        train_file=str(train_file),
        validation_file=str(validation_file),
        output_dir=str(output_dir),
        max_steps=max_steps,
        max_eval_samples=8,
        eval_strategy="no",
        eval_on_start=False,
        save_strategy="no",
        disable_tqdm=True,
    )
    accelerate_launch("pretrain.py", str(recipe_file))
    return output_dir


def local_recipe(recipe: str, path: Path, **changes) -> Path:
    """A copy of a repo recipe that reads local files instead of its Hub dataset, with some fields changed."""
    fields = load_recipe(REPO_ROOT / recipe)
    for key in ("dataset_name", "dataset_config_name", "max_train_samples", "max_eval_samples"):
        fields.pop(key, None)
    fields.update(changes)
    path.write_text(yaml.safe_dump(fields, sort_keys=False), encoding="utf-8")
    return path


def run_recipe(argument_types: tuple[type, ...], function, recipe: str | Path, *overrides: str) -> dict:
    """What a fine-tuning script does, in this process: parse the recipe with overrides and run it."""
    *arguments, merged = parse_recipe(
        argument_types, [str(REPO_ROOT / recipe), "--disable_tqdm", "true", *overrides]
    )
    return function(*arguments, merged)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
