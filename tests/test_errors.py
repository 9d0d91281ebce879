"""Bad input ends a script with one line naming what is wrong, under `accelerate launch -q` too; bugs keep their
traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO_ROOT, accelerate_launch

from lmrecipes.errors import EXIT_BAD_INPUT, RecipeError, one_line_errors


def test_a_recipe_error_becomes_one_line_and_exit_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info, one_line_errors():
        raise RecipeError("hidden_size must be >= 1, got 0")
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: hidden_size must be >= 1, got 0\n"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(KeyError), one_line_errors():
        raise KeyError("a bug")


def lines_of_error(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_a_bad_recipe_under_accelerate_launch_prints_one_line_and_no_traceback(tmp_path):
    result = accelerate_launch(
        "pretrain.py",
        "recipes/mini_gpt/tiny.yaml",
        "--output_dir",
        str(tmp_path / "run"),
        "--num_attention_heads",
        "3",
        launch_options=("-q",),
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    [line] = lines_of_error(result.stderr)
    assert "num_attention_heads" in line
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_bad_recipe_run_directly_exits_with_status_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/pretrain.py", "recipes/mini_gpt/tiny.yaml", "--per_device_train_batch_size", "0",
         "--output_dir", str(tmp_path / "run")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    assert lines_of_error(result.stderr) == ["error: per_device_train_batch_size must be >= 1, got 0"]
