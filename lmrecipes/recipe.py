"""Recipes: flat YAML files whose fields fill the model, data and TrainingArguments dataclasses.

`scripts/pretrain.py recipes/mini_gpt/tiny.yaml --learning_rate 1e-3` reads the YAML, then lets every command-line
`--field value` override it. Parsing goes through transformers' `HfArgumentParser`, so types, choices and help texts
are the dataclasses' own; a field that no dataclass has is an error that names the recipe file and the field.
`--help` lists every field with the recipe's values as defaults; `--field None` unsets a recipe's field (e.g.
`--dataset_name None --train_file my.jsonl` switches a Hub recipe to local files).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from lmrecipes.errors import RecipeError
from lmrecipes.secrets import reject_token_fields


def _to_cli(key: str, value: Any) -> list[str]:
    """One YAML field as the command-line words argparse expects (the parser then applies the real types)."""
    if value is None:
        return []
    if isinstance(value, bool):
        return [f"--{key}", str(value).lower()]
    if isinstance(value, list):
        return [f"--{key}", *(str(v) for v in value)]
    if isinstance(value, dict):
        return [f"--{key}", json.dumps(value)]
    return [f"--{key}", str(value)]


def load_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        recipe = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise RecipeError(f"{path}:{line} not valid YAML: {problem}") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: a recipe is a flat mapping of field: value, got {type(recipe).__name__}")
    return recipe


def parse_recipe(dataclass_types: tuple[type, ...], argv: list[str] | None = None) -> tuple[Any, ...]:
    """Parse `<recipe.yaml> [--field value ...]` into one instance of each dataclass.

    Returns the dataclass instances followed by the merged recipe (a dict: the YAML with the overrides applied), which
    goes into the model card.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    known = {field.name for dc in dataclass_types for field in dataclasses.fields(dc) if field.init}

    recipe: dict[str, Any] = {}
    recipe_path = None
    if argv and not argv[0].startswith("-"):
        recipe_path = argv.pop(0)
        recipe = load_recipe(recipe_path)
    if "-h" in argv or "--help" in argv:
        # The recipe's values as the defaults shown: what this command would run with.
        parser.set_defaults(**{key: value for key, value in recipe.items() if key in known})
        parser.print_help()
        raise SystemExit(0)
    argv = _unset_none_overrides(argv, recipe, _fields_defaulting_to_none(dataclass_types))
    overridden = [word[2:].split("=", 1)[0] for word in argv if word.startswith("--")]
    for keys, where, prefix in (
        (recipe, f"{recipe_path}: unknown field", ""),
        (overridden, "unknown command-line field", "--"),
    ):
        for key in keys:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                suggestion = f" (did you mean '{prefix}{hint[0]}'?)" if hint else ""
                raise RecipeError(f"{where} '{prefix}{key}'{suggestion}")

    words = [word for key, value in recipe.items() for word in _to_cli(key, value)] + argv
    # argparse keeps the last value given for a field, so command-line overrides win over the recipe.
    instances = parser.parse_args_into_dataclasses(args=words)
    # The record kept in the output folder and model card: the recipe plus the overrides, as parsed values.
    parsed = {key: getattr(inst, key) for inst in instances for key in overridden if hasattr(inst, key)}
    merged = {**recipe, **{key: _plain(value) for key, value in parsed.items()}}
    reject_token_fields(merged, source=recipe_path or "command line")
    return (*instances, merged)


NONE_WORDS = ("None", "none", "null", "~")


def _fields_defaulting_to_none(dataclass_types: tuple[type, ...]) -> set[str]:
    return {
        field.name
        for dc in dataclass_types
        for field in dataclasses.fields(dc)
        if field.init and field.default is None
    }


def _unset_none_overrides(argv: list[str], recipe: dict[str, Any], nullable: set[str]) -> list[str]:
    """Drop `--field None` (also `--field=None`) from argv and `field` from the recipe, for fields whose default is
    None: argparse alone would hand the string 'None' to the dataclass."""
    kept: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        key, has_value, inline = word[2:].partition("=") if word.startswith("--") else ("", False, "")
        value = inline if has_value else (argv[index + 1] if index + 1 < len(argv) else None)
        if key in nullable and value in NONE_WORDS:
            recipe.pop(key, None)
            index += 1 if has_value else 2
            continue
        kept.append(word)
        index += 1
    return kept


def _plain(value: Any) -> Any:
    """Enums and other parsed types back to YAML-friendly values."""
    return getattr(value, "value", value)


def parse_args_with_path(dataclass_type: type, path_field: str, argv: list[str] | None = None) -> Any:
    """HfArgumentParser over one dataclass, where a first word without "--" fills `path_field`.

    For tools that act on an output folder: `scripts/generate.py outputs/mini_gpt-tiny --prompt ...`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        argv = [f"--{path_field}", *argv]
    (args,) = HfArgumentParser(dataclass_type).parse_args_into_dataclasses(args=argv)
    return args
