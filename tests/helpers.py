"""What the tests share: paths, the dataset mirror, a tiny corpus, and running the real scripts the way users do
(`accelerate launch --config_file ... scripts/<script>.py <recipe>`) or in this process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from lmrecipes.recipe import load_recipe, parse_recipe

REPO_ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).with_name("accelerate")
DATA_MIRROR = REPO_ROOT.parent / "shared" / "datasets"


def needs_mirror(hub_id: str | None = None) -> pytest.MarkDecorator:
    """Skip unless the dataset mirror ../shared/datasets (or its copy of `hub_id`) is there."""
    folder = DATA_MIRROR / hub_id if hub_id else DATA_MIRROR
    where = f"{hub_id} in the dataset mirror" if hub_id else "the dataset mirror"
    return pytest.mark.skipif(not folder.is_dir(), reason=f"needs {where} ../shared/datasets")


def script_main(script: str) -> Callable:
    """The `main` of scripts/<script>.py, imported from its file: to run a script's program in the test process."""
    path = REPO_ROOT / "scripts" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"scripts.{script}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as for any import (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module.main


def accelerate_launch(
    script: str,
    recipe: str,
    *overrides: str,
    config: str = "cpu.yaml",
    timeout: int = 300,
    launch_options: tuple[str, ...] = (),
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Launch scripts/<script> on a recipe with overrides; unless `check=False`, raise with the output's tail if it
    fails."""
    command = [
        str(ACCELERATE),
        "launch",
        *launch_options,
        "--config_file",
        str(REPO_ROOT / "accelerate_configs" / config),
        "--num_cpu_threads_per_process",
        "1",
        str(REPO_ROOT / "scripts" / script),
        str(REPO_ROOT / recipe),
        *overrides,
    ]
    # A FutureWarning (how transformers, datasets and accelerate announce a removal) fails the launched run, as
    # under `python -W error::FutureWarning`: a script's own lines are `__main__`, which no module filter singles out.
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONWARNINGS": "error::FutureWarning",
    }
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


# The one account of the fake Hub (tests/hub_server.py) and its token, shaped like a real one so that scrubbing by
# pattern is exercised.
HUB_USER = "alice"
HUB_TOKEN = "hf_lmrecipesTestToken0123456789abcdef"

# The sizes of the tiny attention models the pipeline tests build.
TINY_SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37}

WORDS = (
    "the cat dog sat on a mat and ran to house in garden with small big red blue green tree river hill "
    "quickly slowly happy sad film movie great terrible story actor plot scene good bad boring loved hated"
).split()


def tiny_corpus(num_lines: int = 400) -> list[str]:
    """Deterministic pseudo-sentences over a small vocabulary: enough for BPE/WordPiece merges to be learned."""
    lines = []
    for i in range(num_lines):
        length = 5 + (i * 7) % 9
        lines.append(" ".join(WORDS[(i * 13 + j * j * 5 + j) % len(WORDS)] for j in range(length)) + ".")
    return lines


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


def save_random_model(
    family: str, folder: Path, tokenizer, *, vocab_size: int | None = None, max_position_embeddings: int = 64
) -> Path:
    """A randomly initialised tiny mini_bert or mini_gpt (TINY_SIZES) and `tokenizer`, saved as an output folder: for
    tests that need a folder to load, not a trained model. `vocab_size` smaller than the tokenizer makes a mismatch."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    import lmrecipes  # noqa: F401  (registers the families, so save_pretrained writes auto_map and code files)

    config = AutoConfig.for_model(
        family,
        **TINY_SIZES,
        vocab_size=vocab_size or len(tokenizer),
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    auto_class = AutoModelForMaskedLM if family == "mini_bert" else AutoModelForCausalLM
    auto_class.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def truncate(path: Path) -> Path:
    """Cut a file to half its size, as an interrupted copy or download leaves it."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path
