"""The launch configs in accelerate_configs/: they load with accelerate's own loader, `accelerate launch` routes each
to the launcher and environment it should, and the CPU ones really start the processes they promise."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from accelerate.commands import launch as accelerate_launch
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.utils import DistributedType, patch_environment
from accelerate.utils import launch as launch_utils

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "accelerate_configs"
PROBE = REPO_ROOT / "tests" / "scripts_for_tests" / "ddp_probe.py"
ACCELERATE = Path(sys.executable).parent / "accelerate"

# What each config must say. CPU configs stay in fp32 (no bf16 units on an AVX2 CPU); GPU configs use bf16.
# multi_cpu.yaml is MULTI_GPU on purpose: accelerate's torchrun path, the one that starts local processes
# without mpirun (see the comment at the top of that file).
EXPECTED_CONFIGS = {
    "cpu.yaml": (DistributedType.NO, 1, "no", True),
    "multi_cpu.yaml": (DistributedType.MULTI_GPU, 2, "no", True),
    "single_gpu.yaml": (DistributedType.NO, 1, "bf16", False),
    "multi_gpu.yaml": (DistributedType.MULTI_GPU, 2, "bf16", False),
    "fsdp.yaml": (DistributedType.FSDP, 2, "bf16", False),
    "deepspeed_zero2.yaml": (DistributedType.DEEPSPEED, 2, "bf16", False),
}

# Which of accelerate's launchers each config ends in, and how many workers per machine it asks for.
EXPECTED_LAUNCH = {
    "cpu.yaml": ("simple", 1),
    "multi_cpu.yaml": ("torchrun", 2),
    "single_gpu.yaml": ("simple", 1),
    "multi_gpu.yaml": ("torchrun", 2),
    "fsdp.yaml": ("torchrun", 2),
    "deepspeed_zero2.yaml": ("deepspeed", 2),
}

# Variables from the surrounding shell that would change what accelerate decides.
LAUNCH_ENV_OVERRIDES = (
    "ACCELERATE_USE_CPU",
    "ACCELERATE_MIXED_PRECISION",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
)


def plan_launch(monkeypatch: pytest.MonkeyPatch, cli: list[str]) -> dict:
    """Run `accelerate launch <cli>` through accelerate's own code up to the point where it would start processes.

    The three launchers are replaced by functions that call accelerate's environment preparation and record the
    result instead of starting anything, so GPU-only configs can be checked on a CPU machine.
    """
    for name in LAUNCH_ENV_OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    plan: dict = {}

    def simple(args):
        cmd, env = launch_utils.prepare_simple_launcher_cmd_env(args)
        plan.update(launcher="simple", env=env, args=args, processes_per_machine=1)

    def torchrun(args):
        env = launch_utils.prepare_multi_gpu_env(args)
        plan.update(launcher="torchrun", env=env, args=args, processes_per_machine=int(args.nproc_per_node))

    def deepspeed(args):
        cmd, env = launch_utils.prepare_deepspeed_cmd_env(args)
        plan.update(launcher="deepspeed", env=env, args=args, processes_per_machine=int(args.nproc_per_node))

    monkeypatch.setattr(accelerate_launch, "simple_launcher", simple)
    monkeypatch.setattr(accelerate_launch, "multi_gpu_launcher", torchrun)
    monkeypatch.setattr(accelerate_launch, "deepspeed_launcher", deepspeed)
    args = accelerate_launch.launch_command_parser().parse_args(cli)
    accelerate_launch.launch_command(args)
    return plan


def test_config_folder_holds_exactly_the_documented_configs():
    on_disk = {path.name for path in CONFIG_DIR.glob("*.yaml")}
    assert on_disk == set(EXPECTED_CONFIGS)
    readme = (CONFIG_DIR / "README.md").read_text()
    for name in [*EXPECTED_CONFIGS, "slurm_multinode.sbatch"]:
        assert f"accelerate_configs/{name}" in readme, f"README.md does not show how to use {name}"


@pytest.mark.parametrize("config_name", sorted(EXPECTED_CONFIGS))
def test_config_loads_with_accelerates_loader(config_name):
    distributed_type, num_processes, mixed_precision, use_cpu = EXPECTED_CONFIGS[config_name]
    config = load_config_from_file(str(CONFIG_DIR / config_name))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == distributed_type
    assert config.num_processes == num_processes
    assert config.num_machines == 1
    assert config.mixed_precision == mixed_precision
    assert config.use_cpu is use_cpu


@pytest.mark.parametrize("config_name", sorted(EXPECTED_CONFIGS))
def test_launch_routes_each_config_to_its_launcher(monkeypatch, config_name):
    launcher, processes_per_machine = EXPECTED_LAUNCH[config_name]
    mixed_precision = EXPECTED_CONFIGS[config_name][2]
    if config_name == "single_gpu.yaml":
        # accelerate names the visible devices in the variable of the backend torch reports: let it see CUDA.
        monkeypatch.setattr(
            torch.accelerator, "current_accelerator", lambda *args, **kwargs: torch.device("cuda")
        )
    plan = plan_launch(monkeypatch, ["--config_file", str(CONFIG_DIR / config_name), str(PROBE), "out"])
    assert plan["launcher"] == launcher
    assert plan["processes_per_machine"] == processes_per_machine
    assert plan["env"]["ACCELERATE_MIXED_PRECISION"] == mixed_precision
    if config_name == "cpu.yaml":
        assert plan["env"]["ACCELERATE_USE_CPU"] == "True"
    if config_name == "single_gpu.yaml":
        # One process seeing several GPUs would make the Trainer fall back to nn.DataParallel.
        assert plan["env"]["CUDA_VISIBLE_DEVICES"] == "0"


def test_num_processes_on_the_command_line_overrides_the_config(monkeypatch):
    cli = ["--config_file", str(CONFIG_DIR / "multi_gpu.yaml"), "--num_processes", "8", str(PROBE), "out"]
    assert plan_launch(monkeypatch, cli)["processes_per_machine"] == 8


def test_fsdp_config_builds_an_fsdp2_plugin_that_wraps_transformer_blocks(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import StateDictType
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    plan = plan_launch(monkeypatch, ["--config_file", str(CONFIG_DIR / "fsdp.yaml"), str(PROBE), "out"])
    fsdp_env = {key: value for key, value in plan["env"].items() if key.startswith(("FSDP_", "ACCELERATE_"))}
    # The workers build their plugin from these variables: a misspelt key in fsdp_config would silently vanish.
    with patch_environment(**fsdp_env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy
    # No explicit class list: accelerate wraps the classes in the model's `_no_split_modules`.
    assert plugin.transformer_cls_names_to_wrap is None
    assert plugin.reshard_after_forward is True
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert plugin.activation_checkpointing is False


def test_deepspeed_config_builds_a_zero2_plugin_that_leaves_batching_to_the_trainer(monkeypatch):
    from accelerate.utils import DeepSpeedPlugin

    plan = plan_launch(
        monkeypatch, ["--config_file", str(CONFIG_DIR / "deepspeed_zero2.yaml"), str(PROBE), "out"]
    )
    assert plan["env"]["ACCELERATE_USE_DEEPSPEED"] == "true"
    accelerate_env = {key: value for key, value in plan["env"].items() if key.startswith("ACCELERATE_")}
    with patch_environment(**accelerate_env):
        plugin = DeepSpeedPlugin()
    zero = plugin.deepspeed_config["zero_optimization"]
    assert zero["stage"] == 2
    assert zero["offload_optimizer"]["device"] == "none"
    # "auto" values are filled from TrainingArguments by the Trainer, so recipe and DeepSpeed cannot disagree.
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == "auto"
    assert plugin.deepspeed_config["gradient_clipping"] == "auto"


FAKE_SRUN = """#!/bin/bash
# Stand-in for srun: drop its options, run the task once per node with SLURM_NODEID set, as srun would.
while [[ $1 == --* ]]; do shift; done
for ((node = 0; node < SLURM_NNODES; node++)); do SLURM_NODEID=$node "$@" || exit $?; done
"""
FAKE_SCONTROL = """#!/bin/bash
printf 'node-a\\nnode-b\\nnode-c\\n'
"""
FAKE_ACCELERATE = f"""#!{sys.executable}
import json, os, sys
with open(os.path.join(os.environ["FAKE_RECORD_DIR"], f"node-{{os.environ['SLURM_NODEID']}}.json"), "w") as f:
    json.dump(sys.argv[1:], f)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_slurm_script_launches_one_machine_rank_per_node(monkeypatch, tmp_path):
    """Run the sbatch script with stand-ins for srun, scontrol and accelerate that record each node's command,
    then feed those commands to accelerate's own launch code to see what torchrun would be told."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"srun": FAKE_SRUN, "scontrol": FAKE_SCONTROL, "accelerate": FAKE_ACCELERATE}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    # Settings the script reads from the environment: start from its defaults, not from the caller's shell.
    inherited = {k: v for k, v in os.environ.items() if k not in ("ACCELERATE_CONFIG", "PROCESSES_PER_NODE")}
    env = {
        **inherited,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_RECORD_DIR": str(tmp_path),
        "SLURM_NNODES": "3",
        "SLURM_JOB_NODELIST": "node-[a-c]",
        "SLURM_GPUS_ON_NODE": "4",
        # accelerate refuses to plan a multi-machine launch when the main port is busy on this machine.
        "MAIN_PROCESS_PORT": str(free_port()),
    }
    script_args = ["scripts/pretrain.py", "recipes/mini_gpt/tiny.yaml", "--run_name", "name with spaces"]
    subprocess.run(
        ["bash", str(CONFIG_DIR / "slurm_multinode.sbatch"), *script_args],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
    for node in range(3):
        argv = json.loads((tmp_path / f"node-{node}.json").read_text())
        assert argv[0] == "launch"
        assert argv[-len(script_args) :] == script_args  # passed through unchanged, spaces included
        plan = plan_launch(monkeypatch, argv[1:])
        args = plan["args"]
        assert plan["launcher"] == "torchrun"
        assert args.config_file == "accelerate_configs/multi_gpu.yaml"
        assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("3", node, "4")
        assert args.num_processes == 12
        assert args.rdzv_backend == "c10d"
        assert args.rdzv_endpoint == f"node-a:{env['MAIN_PROCESS_PORT']}"
        assert plan["env"]["ACCELERATE_MIXED_PRECISION"] == "bf16"


def run_probe(config_name: str, out_dir: Path, *probe_args: str) -> list[dict]:
    """`accelerate launch --config_file accelerate_configs/<config_name> ddp_probe.py`, exactly as documented."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    command = [str(ACCELERATE), "launch", "--config_file", f"accelerate_configs/{config_name}", str(PROBE)]
    completed = subprocess.run(
        [*command, str(out_dir), *probe_args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    reports = [json.loads(path.read_text()) for path in sorted(out_dir.glob("probe-*.json"))]
    return sorted(reports, key=lambda report: report["accelerate"]["process_index"])


def test_multi_cpu_config_starts_two_gloo_processes_that_train_as_one(tmp_path):
    reports = run_probe("multi_cpu.yaml", tmp_path, "--train")

    assert len(reports) == 2, "accelerate launch did not start 2 processes"
    assert len({report["pid"] for report in reports}) == 2
    for rank, report in enumerate(reports):
        assert report["env"]["WORLD_SIZE"] == "2"
        assert report["env"]["ACCELERATE_MIXED_PRECISION"] == "no"
        assert report["accelerate"] == {
            "distributed_type": "MULTI_CPU",
            "backend": "gloo",
            "process_group_backend": "gloo",
            "num_processes": 2,
            "process_index": rank,
            "device": "cpu:0",
            "mixed_precision": "no",
            "all_reduce_sum": 3.0,  # 1 + 2: both ranks took part
        }
        trainer = report["trainer"]
        assert (trainer["world_size"], trainer["process_index"]) == (2, rank)
        assert trainer["device"].startswith("cpu")
        assert trainer["parallel_mode"] == "DISTRIBUTED"
        assert report["train"]["wrapped_model_class"] == "DistributedDataParallel"
        assert report["train"]["global_step"] == 3

    first, second = (report["train"] for report in reports)
    assert first["first_batch_token_sum"] != second["first_batch_token_sum"], (
        "both ranks trained on the same batch"
    )
    # DDP averaged the gradients, so after three steps on different data the weights are still identical.
    assert first["parameter_sum"] == pytest.approx(second["parameter_sum"], rel=0, abs=1e-9)


def test_cpu_config_starts_one_process(tmp_path):
    (report,) = run_probe("cpu.yaml", tmp_path)

    assert report["env"]["ACCELERATE_USE_CPU"] == "True"
    assert report["accelerate"]["distributed_type"] == "NO"
    assert report["accelerate"]["num_processes"] == 1
    assert report["accelerate"]["process_group_backend"] is None
    assert report["accelerate"]["all_reduce_sum"] == 1.0
    assert report["trainer"]["world_size"] == 1
    assert report["trainer"]["device"] == "cpu"
    assert report["trainer"]["parallel_mode"] == "NOT_PARALLEL"


@pytest.mark.parametrize("config_name", ["cpu.yaml", "multi_cpu.yaml"])
def test_workers_die_with_a_killed_launcher(config_name, tmp_path):
    """kill -9 of `accelerate launch` cannot be passed on by the launcher: the workers must end by themselves, or a
    restarted run would share the output folder with them."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    command = [str(ACCELERATE), "launch", "--config_file", f"accelerate_configs/{config_name}", str(PROBE)]
    launcher = subprocess.Popen(
        [*command, str(tmp_path), "--linger", "120"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    expected = EXPECTED_CONFIGS[config_name][1]
    try:
        deadline = time.monotonic() + 90
        while len(list(tmp_path.glob("probe-*.json"))) < expected and time.monotonic() < deadline:
            assert launcher.poll() is None, "the launcher ended before its workers reported"
            time.sleep(0.2)
        workers = [json.loads(path.read_text())["pid"] for path in tmp_path.glob("probe-*.json")]
        assert len(workers) == expected
    finally:
        launcher.kill()  # SIGKILL: nothing in the launcher runs after this
        launcher.wait()

    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)  # leave no stray process behind a failed test
    assert not survivors, f"workers {survivors} outlived their launcher"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A dead child not yet reaped by its (dead) parent's reaper is a zombie: it no longer runs.
    status = Path(f"/proc/{pid}/status")
    return not (status.is_file() and "\nState:\tZ" in status.read_text())
