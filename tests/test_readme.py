"""The README's Python example runs as written, so a newcomer's first copy-paste works."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import REPO_ROOT


def test_readme_python_example_runs(tmp_path):
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks, "README.md has no Python example"
    result = subprocess.run(
        [sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("the cat"), result.stdout
    assert (tmp_path / "my-gpt" / "model.safetensors").is_file()
    assert (tmp_path / "my-gpt" / "modeling_mini_gpt.py").is_file()
