"""Copies between model files stay copies, as transformers' `utils/check_copies.py` keeps them.

Each model file travels alone to the Hub as remote code, so a function two families share is written in both. The
copy carries `# Copied from models.<family>.<module>.<name>` on the line above it, and must equal its source.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from helpers import REPO_ROOT

MODELS_DIR = REPO_ROOT / "models"
MARKER = re.compile(r"^# Copied from models\.(\w+)\.(\w+)\.(\w+)\s*$")


def top_level_sources(path: Path) -> dict[str, str]:
    """The source text of every top-level function and class of a file, by name."""
    text = path.read_text()
    tree = ast.parse(text)
    return {
        node.name: ast.get_source_segment(text, node)
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef)
    }


def marked_copies(path: Path) -> list[tuple[str, Path, str]]:
    """(name of the copy, source file, name in the source file) for every marker in a file."""
    lines = path.read_text().splitlines()
    copies = []
    for number, line in enumerate(lines):
        match = MARKER.match(line)
        if match is None:
            continue
        family, module, source_name = match.groups()
        definition = re.match(r"(?:def|class) (\w+)", lines[number + 1])
        assert definition, (
            f"{path.name}:{number + 1}: a Copied from marker must stand right above a def or class"
        )
        copies.append((definition.group(1), MODELS_DIR / family / f"{module}.py", source_name))
    return copies


def stale_copies(path: Path) -> list[str]:
    copies = top_level_sources(path)
    stale = []
    for name, source_path, source_name in marked_copies(path):
        source = top_level_sources(source_path).get(source_name)
        if source is None:
            stale.append(f"{path.name}: {name} names {source_path.stem}.{source_name}, which does not exist")
        elif copies[name] != source:
            stale.append(f"{path.name}: {name} differs from {source_path.stem}.{source_name}")
    return stale


MODEL_FILES = sorted(MODELS_DIR.glob("*/modeling_*.py")) + sorted(MODELS_DIR.glob("*/configuration_*.py"))


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda path: path.name)
def test_every_marked_copy_equals_its_source(path):
    assert stale_copies(path) == []


def test_the_shared_functions_are_marked_copies():
    marked = {(path.parent.name, name) for path in MODEL_FILES for name, _, _ in marked_copies(path)}
    assert ("mini_bert", "eager_attention_forward") in marked
    assert ("lstm_lm", "last_real_token_index") in marked
    assert ("mini_gpt", "adaptive_softmax_outputs") in marked
    assert ("mini_gpt", "check_adaptive_softmax_fields") in marked


def test_a_copy_that_drifts_is_reported(tmp_path):
    source = (MODELS_DIR / "mini_gpt" / "modeling_mini_gpt.py").read_text()
    copy_of_bert = (MODELS_DIR / "mini_bert" / "modeling_mini_bert.py").read_text()
    assert "dtype=torch.float32" in source and "dtype=torch.float32" in copy_of_bert
    drifted = tmp_path / "modeling_mini_bert.py"
    drifted.write_text(copy_of_bert.replace("dim=-1, dtype=torch.float32", "dim=-1", 1))
    assert stale_copies(drifted) == [
        "modeling_mini_bert.py: eager_attention_forward differs from modeling_mini_gpt.eager_attention_forward"
    ]
