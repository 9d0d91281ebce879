"""Helpers shared by the benchmarks: machine description, timing, markdown output (the matmul peak is
lmrecipes.throughput's).

Benchmarks are scripts, not tests: they print numbers and never assert on time.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

RESULTS_HEADER = "# Benchmark results"
DEFAULT_RESULTS_FILE = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), with its family and model numbers (a virtual machine's
    "AMD EPYC" may be a Zen 4 or a Zen 5, whose AVX-512 throughput differs twofold), else what `platform` knows."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    return (
        f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    )


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def machine_info(device: str) -> dict[str, str]:
    """What the numbers were measured on and with, for the results file."""
    import transformers

    info = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpu cores (logical, visible)": str(
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    info["load average at start"] = load_average()
    info["command"] = " ".join(shlex.quote(arg) for arg in [sys.executable.rsplit("/", 1)[-1], *sys.argv])
    return info


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock times cover it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = ("wall", "cpu")


def clock_seconds(clock: str) -> float:
    """ "wall": elapsed time. "cpu": CPU time of this process (all its threads), which leaves out the time other
    processes hold the cores; with one torch thread it is the time the work would take on a dedicated core."""
    if clock == "wall":
        return time.perf_counter()
    if clock == "cpu":
        return time.process_time()
    raise ValueError(f"Unknown clock {clock!r}; expected one of {CLOCKS}.")


def median_and_spread(samples: Sequence[float]) -> tuple[float, float]:
    """Median and relative interquartile range (IQR / median) of timing samples."""
    median = statistics.median(samples)
    if len(samples) < 4:
        return median, (max(samples) - min(samples)) / median
    quartiles = statistics.quantiles(samples, n=4)
    return median, (quartiles[2] - quartiles[0]) / median


def timed(function: Callable[[], object], device: torch.device, clock: str = "wall") -> float:
    """Seconds one call of `function` takes on `clock`, GPU work included."""
    synchronize(device)
    start = clock_seconds(clock)
    function()
    synchronize(device)
    return clock_seconds(clock) - start


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_lines(info: dict[str, str]) -> str:
    return "\n".join(
        f"- {key}: `{value}`" if key == "command" else f"- {key}: {value}" for key, value in info.items()
    )


def si(value: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (plus unit)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def update_results_section(path: Path, title: str, body: str) -> None:
    """Write `## {title}` with `body` into the results file, replacing that section if present.

    Other sections (other benchmarks' owners write them) are left untouched; the file is created with the
    `# Benchmark results` header when missing.
    """
    text = path.read_text() if path.exists() else RESULTS_HEADER + "\n"
    if not text.startswith(RESULTS_HEADER):
        text = RESULTS_HEADER + "\n\n" + text
    section = f"## {title}\n\n{body.strip()}\n"
    # The section runs from its heading to the next level-2 heading (or the end of the file).
    pattern = re.compile(rf"^## {re.escape(title)}[ \t]*\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")
