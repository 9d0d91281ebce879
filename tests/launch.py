"""Running the real scripts the way users do: `accelerate launch --config_file ... scripts/<script>.py <recipe>`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).with_name("accelerate")
DATA_MIRROR = REPO_ROOT.parent / "shared" / "datasets"


def needs_mirror(hub_id: str | None = None) -> pytest.MarkDecorator:
    """Skip unless the dataset mirror ../shared/datasets (or its copy of `hub_id`) is there."""
    folder = DATA_MIRROR / hub_id if hub_id else DATA_MIRROR
    where = f"{hub_id} in the dataset mirror" if hub_id else "the dataset mirror"
    return pytest.mark.skipif(not folder.is_dir(), reason=f"needs {where} ../shared/datasets")


def accelerate_launch(
    script: str, recipe: str, *overrides: str, config: str = "cpu.yaml", timeout: int = 300
) -> subprocess.CompletedProcess:
    """Launch scripts/<script> on a recipe with overrides; raise with the output's tail if it fails."""
    command = [
        str(ACCELERATE),
        "launch",
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
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result
