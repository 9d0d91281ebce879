"""Training speed of each model family versus transformers' built-in model of identical size.

For every family one training step (forward + backward + AdamW step, the optimizer the Trainer uses by default)
is timed for our model and for its reference, interleaved in the same process on the same batch:

    mini_gpt  vs  GPT2LMHeadModel   (same hidden/layers/heads/intermediate/vocab/positions, sdpa attention)
    mini_bert vs  BertForMaskedLM   (same sizes, sdpa attention)
    lstm_lm   vs  a plain nn.Embedding -> nn.LSTM -> nn.Linear language model written below

Parameter counts are asserted equal, so both models do the same arithmetic. Reported: median step time, tokens/s,
achieved FLOP/s and model-FLOPs utilisation (MFU) against the matmul peak measured on this machine, before and
after the models (on CPU for both fp32 backends torch ships, MKL's torch.matmul and oneDNN; the higher counts).

FLOPs per token (training = forward + backward = 3 x forward, a matmul of a (d_in x d_out) weight costing
2 * d_in * d_out FLOPs per token forward):

    6 * N_matmul + attention
    N_matmul  = weights of every matmul a token goes through: the linear layers of the blocks, the LM head (tied
                to the input embedding, but still a vocab x hidden matmul per token) and, for the LSTM, the four
                gates' input and recurrent matrices (4 * hidden * (input + hidden) per layer). Embedding
                look-ups, biases, LayerNorms and activations are not counted.
    attention = 6 * n_layer * seq * hidden for causal models (QK^T and AV over the lower triangle: half of the
                12 * n_layer * seq * hidden of full attention), 12 * n_layer * seq * hidden for the
                bidirectional BERT; 0 for the LSTM.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_training_speed.py                       # CPU, fp32, all families
    .venv/bin/python benchmarks/bench_training_speed.py --recipes recipes/mini_gpt/wikitext2.yaml  # a recipe's sizes
    .venv/bin/python benchmarks/bench_training_speed.py --threads 1 --clock cpu  # on a machine shared with others
    .venv/bin/python benchmarks/bench_training_speed.py --device cuda         # GPU, bf16 autocast
    .venv/bin/python benchmarks/bench_training_speed.py --device cuda --torch_compile true  # both models compiled
    .venv/bin/python benchmarks/bench_training_speed.py --families mini_gpt --profile true
    .venv/bin/python benchmarks/bench_training_speed.py --update_results true --json_output /tmp/speed.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import (
    HfArgumentParser,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)
    CLOCKS,
    DEFAULT_RESULTS_FILE,
    clock_seconds,
    machine_info,
    machine_lines,
    markdown_table,
    median_and_spread,
    si,
    timed,
    update_results_section,
)
from twins import built_in_twin  # noqa: E402

from lmrecipes.models.lstm_lm import LSTMLMConfig, LSTMLMForCausalLM  # noqa: E402
from lmrecipes.models.mini_bert import MiniBertConfig, MiniBertForMaskedLM  # noqa: E402
from lmrecipes.models.mini_gpt import MiniGPTConfig, MiniGPTForCausalLM  # noqa: E402
from lmrecipes.recipe import load_recipe  # noqa: E402
from lmrecipes.throughput import matmul_weight_count, measured_matmul_peaks  # noqa: E402

FAMILIES = ("lstm_lm", "mini_bert", "mini_gpt")
RESULTS_SECTION = "Training speed"
MLM_PROBABILITY = 0.15


@dataclass
class TrainingSpeedArguments:
    device: str = field(default="cpu", metadata={"help": "cpu (fp32) or cuda (bf16 autocast, fp32 weights)."})
    families: list[str] = field(default_factory=lambda: list(FAMILIES), metadata={"help": "Families to run."})
    recipes: list[str] | None = field(
        default=None,
        metadata={
            "help": "Pretraining recipe YAMLs (e.g. recipes/mini_gpt/wikitext2.yaml): each sets the sizes, batch, "
            "sequence length and dropout of its model_type's family, and the families run are those of the recipes."
        },
    )
    batch_size: int = field(default=16, metadata={"help": "Sequences per training step."})
    seq_len: int = field(default=128, metadata={"help": "Tokens per sequence."})
    vocab_size: int = field(default=8000)
    hidden_size: int = field(default=256, metadata={"help": "mini_gpt / mini_bert width."})
    num_layers: int = field(default=4, metadata={"help": "mini_gpt / mini_bert blocks."})
    num_heads: int = field(default=4)
    intermediate_size: int = field(default=1024)
    max_positions: int = field(default=512, metadata={"help": "Position embeddings (>= seq_len)."})
    lstm_size: int = field(default=512, metadata={"help": "lstm_lm embedding and hidden size (tied head)."})
    lstm_layers: int = field(default=2)
    dropout: float = field(default=0.1, metadata={"help": "Dropout of every kind, in both models of a pair."})
    warmup_steps: int = field(default=3, metadata={"help": "Untimed steps per model before timing."})
    torch_compile: bool = field(
        default=False,
        metadata={
            "help": "torch.compile both models of each pair, as a recipe's torch_compile: true does (compilation "
            "happens in the warm-up steps)."
        },
    )
    timed_steps: int = field(default=10, metadata={"help": "Timed steps per model (median reported)."})
    threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (default: torch's)."})
    clock: str = field(
        default="wall",
        metadata={
            "help": "wall: elapsed time. cpu: this process's CPU time, for a machine shared with other work: "
            "with --threads 1 it gives the speed on one dedicated core (peak measured the same way)."
        },
    )
    matmul_size: int | None = field(
        default=None,
        metadata={"help": "Side of the square matmul timed for the peak (default 2048 on CPU, 8192 on GPU)."},
    )
    matmul_repeats: int = field(default=30, metadata={"help": "Timed matmuls; the fastest gives the peak."})
    profile: bool = field(
        default=False, metadata={"help": "Also profile a few steps of each model with torch.profiler."}
    )
    profile_steps: int = field(default=3)
    profile_rows: int = field(default=25, metadata={"help": "Operators listed per profiled model."})
    json_output: str | None = field(
        default=None, metadata={"help": "Write the results as JSON here (bench_data_pipeline reads it)."}
    )
    update_results: bool = field(
        default=False, metadata={"help": f"Write the '{RESULTS_SECTION}' section of the results file."}
    )
    results_file: str = field(default=str(DEFAULT_RESULTS_FILE))
    seed: int = field(default=0)

    def __post_init__(self) -> None:
        if self.recipes:
            self.families = [recipe_model_type(path) for path in self.recipes]
            if len(set(self.families)) < len(self.families):
                raise ValueError(f"--recipes: give one recipe per family, got model types {self.families}.")
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"--families: unknown {unknown}; choose from {list(FAMILIES)}.")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: CUDA is not available in this torch build/machine.")
        if self.seq_len > self.max_positions:
            raise ValueError(f"--seq_len {self.seq_len} exceeds --max_positions {self.max_positions}.")
        if self.warmup_steps < 1 or self.timed_steps < 1:
            raise ValueError("--warmup_steps and --timed_steps must be >= 1.")
        if self.clock not in CLOCKS:
            raise ValueError(f"--clock {self.clock!r}: expected one of {CLOCKS}.")
        if self.clock == "cpu" and (self.threads != 1 or not self.device.startswith("cpu")):
            # Several threads' CPU time includes their spin-waiting for each other; GPU work is not CPU time.
            raise ValueError("--clock cpu needs --device cpu and --threads 1.")
        if self.matmul_size is None:
            # Big enough to reach the peak, small enough that the best of many runs dodges a neighbour's load.
            self.matmul_size = 8192 if self.device.startswith("cuda") else 2048


# Recipe field -> benchmark argument. A recipe's one `dropout` sets every dropout of the family, as here.
RECIPE_TO_ARGUMENT = {
    "tokenizer_vocab_size": "vocab_size",
    "block_size": "seq_len",
    "per_device_train_batch_size": "batch_size",
    "dropout": "dropout",
}
RECIPE_TO_ARGUMENT_BY_FAMILY = {
    "lstm_lm": {"hidden_size": "lstm_size", "num_hidden_layers": "lstm_layers"},
    "mini_bert": {
        "hidden_size": "hidden_size",
        "num_hidden_layers": "num_layers",
        "num_attention_heads": "num_heads",
        "intermediate_size": "intermediate_size",
        "max_position_embeddings": "max_positions",
    },
}
RECIPE_TO_ARGUMENT_BY_FAMILY["mini_gpt"] = RECIPE_TO_ARGUMENT_BY_FAMILY["mini_bert"]


def recipe_model_type(path: str) -> str:
    model_type = load_recipe(path).get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(f"--recipes {path}: model_type {model_type!r} is not one of {list(FAMILIES)}.")
    return model_type


def arguments_for(family: str, args: TrainingSpeedArguments) -> TrainingSpeedArguments:
    """`args` with the sizes of `family`'s recipe (when --recipes names one), else `args` itself."""
    for path in args.recipes or []:
        recipe = load_recipe(path)
        if recipe.get("model_type") != family:
            continue
        if family == "lstm_lm" and recipe.get("embedding_size", recipe.get("hidden_size")) != recipe.get(
            "hidden_size", recipe.get("embedding_size")
        ):
            raise ValueError(f"{path}: the benchmark's reference LSTM needs embedding_size == hidden_size.")
        mapping = RECIPE_TO_ARGUMENT | RECIPE_TO_ARGUMENT_BY_FAMILY[family]
        sizes = {argument: recipe[key] for key, argument in mapping.items() if recipe.get(key) is not None}
        if family != "lstm_lm" and "intermediate_size" not in sizes and "hidden_size" in sizes:
            sizes["intermediate_size"] = (
                4 * sizes["hidden_size"]
            )  # the configs' default when a recipe omits it
        if "max_positions" not in sizes:
            sizes["max_positions"] = max(args.max_positions, sizes.get("seq_len", args.seq_len))
        return dataclasses.replace(args, recipes=None, families=[family], **sizes)
    return args


def describe_sizes(family: str, args: TrainingSpeedArguments) -> str:
    shape = f"batch {args.batch_size} x seq {args.seq_len}, vocab {args.vocab_size}, dropout {args.dropout}"
    if family == "lstm_lm":
        return f"embedding = hidden {args.lstm_size}, {args.lstm_layers} layers, tied head; {shape}"
    return (
        f"hidden {args.hidden_size}, {args.num_layers} layers, {args.num_heads} heads, intermediate "
        f"{args.intermediate_size}, {args.max_positions} positions; {shape}"
    )


# ---------------------------------------------------------------------------------------------------------------
# Model pairs and their FLOPs
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ModelPair:
    family: str
    objective: str  # "causal" or "masked"
    ours: nn.Module
    reference: nn.Module
    reference_name: str
    attention_flops_per_token: float


def build_pair(family: str, args: TrainingSpeedArguments) -> ModelPair:
    seq, hidden, layers = args.seq_len, args.hidden_size, args.num_layers
    if family == "mini_gpt":
        ours = MiniGPTForCausalLM(
            MiniGPTConfig(
                vocab_size=args.vocab_size,
                hidden_size=hidden,
                num_hidden_layers=layers,
                num_attention_heads=args.num_heads,
                intermediate_size=args.intermediate_size,
                max_position_embeddings=args.max_positions,
                hidden_dropout=args.dropout,
                attention_dropout=args.dropout,
                embedding_dropout=args.dropout,
                attn_implementation="sdpa",
            )
        )
        reference = built_in_twin(ours.config, attn_implementation="sdpa")
        return ModelPair(family, "causal", ours, reference, "GPT2LMHeadModel", 6 * layers * seq * hidden)
    if family == "mini_bert":
        sizes = dict(
            vocab_size=args.vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=args.num_heads,
            intermediate_size=args.intermediate_size,
            max_position_embeddings=args.max_positions,
            hidden_dropout_prob=args.dropout,
            attention_probs_dropout_prob=args.dropout,
            attn_implementation="sdpa",
        )
        ours = MiniBertForMaskedLM(MiniBertConfig(**sizes))
        reference = built_in_twin(ours.config, attn_implementation="sdpa")
        return ModelPair(family, "masked", ours, reference, "BertForMaskedLM", 12 * layers * seq * hidden)
    if family == "lstm_lm":
        ours = LSTMLMForCausalLM(
            LSTMLMConfig(
                vocab_size=args.vocab_size,
                embedding_size=args.lstm_size,
                hidden_size=args.lstm_size,
                num_hidden_layers=args.lstm_layers,
                embedding_dropout=args.dropout,
                hidden_dropout=args.dropout,
                output_dropout=args.dropout,
            )
        )
        reference = built_in_twin(ours.config)
        return ModelPair(family, "causal", ours, reference, "plain nn.LSTM LM", 0.0)
    raise ValueError(f"Unknown family {family!r}")


def unique_parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())  # parameters() skips tied duplicates


def training_flops_per_token(pair: ModelPair) -> float:
    ours, reference = matmul_weight_count(pair.ours), matmul_weight_count(pair.reference)
    if ours != reference:
        raise AssertionError(f"{pair.family}: matmul weights differ: ours {ours:,}, reference {reference:,}")
    return 6 * ours + pair.attention_flops_per_token


# ---------------------------------------------------------------------------------------------------------------
# Batches, optimizer and one training step
# ---------------------------------------------------------------------------------------------------------------


def make_batch(objective: str, args: TrainingSpeedArguments, device: torch.device) -> dict[str, torch.Tensor]:
    """One fixed batch, as the pipeline's collator would give it: packed blocks (no padding), labels."""
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size, args.seq_len)
    # Ids from 5 on: the low ids are the special tokens of both tokenizers ([PAD] ... [MASK] / <|endoftext|> <pad>).
    input_ids = torch.randint(5, args.vocab_size, shape, generator=generator)
    if objective == "causal":
        labels = input_ids.clone()
    else:
        # MLM: predict 15% of the positions (fed as [MASK], id 4 in the wordpiece tokenizer), ignore the rest.
        is_masked = torch.rand(shape, generator=generator) < MLM_PROBABILITY
        labels = torch.where(is_masked, input_ids, torch.full_like(input_ids, -100))
        input_ids = torch.where(is_masked, torch.full_like(input_ids, 4), input_ids)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    return {name: tensor.to(device) for name, tensor in batch.items()}


def trainer_default_optimizer(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer `Trainer` builds by default (AdamW, fused where torch supports it), on all parameters."""
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = TrainingArguments(output_dir=output_dir, use_cpu=device.type == "cpu", report_to=[])
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args)
    return optimizer_cls(model.parameters(), **optimizer_kwargs)


class TrainingStep:
    """forward (bf16 autocast on GPU) -> loss.backward() -> optimizer.step() -> zero_grad, as Trainer does."""

    def __init__(
        self,
        model: nn.Module,
        batch: dict[str, torch.Tensor],
        device: torch.device,
        compile_model: bool = False,
    ):
        self.model, self.batch, self.device = model.to(device).train(), batch, device
        self.forward = torch.compile(self.model) if compile_model else self.model
        self.optimizer = trainer_default_optimizer(self.model, device)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self) -> None:
        with self.autocast():
            outputs = self.forward(**self.batch)
        loss = outputs["loss"]
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def interleaved_step_times(
    steps: dict[str, Callable[[], None]], args, device
) -> dict[str, dict[str, list[float]]]:
    """Alternate the models step by step (order flipped every round) so that load changes hit both alike.

    Returns {model: {"wall": [seconds per timed step], "cpu": [...]}}.
    """
    names = list(steps)
    times = {name: {clock: [] for clock in CLOCKS} for name in names}
    for round_index in range(args.warmup_steps + args.timed_steps):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            start = {clock: clock_seconds(clock) for clock in CLOCKS}
            timed(steps[name], device)  # synchronizes the GPU before and after
            if round_index >= args.warmup_steps:
                for clock in CLOCKS:
                    times[name][clock].append(clock_seconds(clock) - start[clock])
    return times


def profile_steps(name: str, step: Callable[[], None], args, device) -> dict[str, tuple[float, float]]:
    """Profile a few steps; print the top operators and return {operator: (self time in us, calls)} per step."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(args.profile_steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    averages = profiler.key_averages()
    attribute = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\n### torch.profiler: {name}, {args.profile_steps} steps\n")
    print(averages.table(sort_by=attribute, row_limit=args.profile_rows))
    return {
        event.key: (getattr(event, attribute) / args.profile_steps, event.count / args.profile_steps)
        for event in averages
    }


def print_profile_difference(family: str, ours: dict, reference: dict, rows: int) -> None:
    """Operators whose self time per step differs most between our model and the reference, and call counts.

    Call counts do not depend on machine load; times do (on a busy machine compare counts and the ops that exist
    in one model only).
    """
    zero = (0.0, 0.0)
    keys = set(ours) | set(reference)
    differences = sorted(keys, key=lambda key: -abs(ours.get(key, zero)[0] - reference.get(key, zero)[0]))
    table = [
        (
            f"`{key}`",
            f"{ours.get(key, zero)[0] / 1000:.2f}",
            f"{reference.get(key, zero)[0] / 1000:.2f}",
            f"{(ours.get(key, zero)[0] - reference.get(key, zero)[0]) / 1000:+.2f}",
            f"{ours.get(key, zero)[1]:g}",
            f"{reference.get(key, zero)[1]:g}",
        )
        for key in differences[:rows]
    ]
    print(f"\n### {family}: operators with the largest self-time difference (per step)\n")
    print(
        markdown_table(
            ["operator", "ours ms", "reference ms", "difference ms", "ours calls", "ref calls"], table
        )
    )
    count_differences = sorted(
        (key for key in keys if ours.get(key, zero)[1] != reference.get(key, zero)[1]),
        key=lambda key: -abs(ours.get(key, zero)[1] - reference.get(key, zero)[1]),
    )
    print(f"\n### {family}: operators called a different number of times (per step)\n")
    print(
        markdown_table(
            ["operator", "ours calls", "reference calls", "ours ms", "reference ms"],
            [
                (
                    f"`{key}`",
                    f"{ours.get(key, zero)[1]:g}",
                    f"{reference.get(key, zero)[1]:g}",
                    f"{ours.get(key, zero)[0] / 1000:.2f}",
                    f"{reference.get(key, zero)[0] / 1000:.2f}",
                )
                for key in count_differences[:rows]
            ],
        )
    )
    total_ours = sum(time for time, _ in ours.values()) / 1000
    total_reference = sum(time for time, _ in reference.values()) / 1000
    print(f"\nTotal self time per step: ours {total_ours:.1f} ms, reference {total_reference:.1f} ms")


# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------


def measure_peaks(device: torch.device, args: TrainingSpeedArguments) -> dict[str, float]:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    print(f"Measuring the {dtype} matmul peak on {device} ...", flush=True)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    peaks = measured_matmul_peaks(device, dtype, args.matmul_size, args.matmul_repeats, clock)
    print("Peak: " + ", ".join(f"{name} {si(flops, 'FLOP/s')}" for name, flops in peaks.items()), flush=True)
    return peaks


def run(args: TrainingSpeedArguments) -> dict:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine_info(args.device)
    # Measured before and after the models (the best counts): on a shared machine one measurement may be unlucky.
    peaks = [measure_peaks(device, args)]

    results = []
    sizes = {}
    for family in args.families:
        family_args = arguments_for(family, args)
        sizes[family] = describe_sizes(family, family_args)
        tokens_per_step = family_args.batch_size * family_args.seq_len
        torch.manual_seed(args.seed)
        pair = build_pair(family, family_args)
        ours_params, reference_params = (
            unique_parameter_count(pair.ours),
            unique_parameter_count(pair.reference),
        )
        if ours_params != reference_params:
            raise AssertionError(
                f"{family}: parameter counts differ: ours {ours_params:,}, {pair.reference_name} {reference_params:,}"
            )
        for model in (pair.ours, pair.reference):
            has_attention = pair.attention_flops_per_token > 0
            if (
                has_attention
                and isinstance(model, PreTrainedModel)
                and model.config._attn_implementation != "sdpa"
            ):
                raise AssertionError(
                    f"{family}: {type(model).__name__} uses {model.config._attn_implementation}"
                )
        flops_per_token = training_flops_per_token(pair)
        batch = make_batch(pair.objective, family_args, device)
        steps = {
            family: TrainingStep(pair.ours, batch, device, args.torch_compile),
            pair.reference_name: TrainingStep(pair.reference, batch, device, args.torch_compile),
        }
        print(f"\n{family} vs {pair.reference_name}: {ours_params:,} parameters each, timing ...", flush=True)
        times = interleaved_step_times(steps, args, device)
        for name, samples_by_clock in times.items():
            samples = samples_by_clock[args.clock]
            median, spread = median_and_spread(samples)
            tokens_per_second = tokens_per_step / median
            wall_tokens_per_second = tokens_per_step / median_and_spread(samples_by_clock["wall"])[0]
            results.append(
                {
                    "family": family,
                    "model": name,
                    "is_ours": name == family,
                    "parameters": ours_params,
                    "batch_size": family_args.batch_size,
                    "seq_len": family_args.seq_len,
                    "flops_per_token": flops_per_token,
                    "median_step_seconds": median,
                    "relative_iqr": spread,
                    "tokens_per_second": tokens_per_second,
                    "wall_tokens_per_second": wall_tokens_per_second,
                    "flops_per_second": flops_per_token * tokens_per_second,
                    "step_seconds": samples_by_clock,
                }
            )
            print(
                f"  {name}: median {median * 1000:.1f} ms/step (IQR {spread:.0%}), {tokens_per_second:,.0f} tokens/s"
            )
        if args.profile:
            profiles = {name: profile_steps(name, step, args, device) for name, step in steps.items()}
            print_profile_difference(
                family, profiles[family], profiles[pair.reference_name], args.profile_rows
            )
        del steps, pair

    peaks.append(measure_peaks(device, args))
    peak = max(flops for measurement in peaks for flops in measurement.values())
    torch_matmul_peak = max(measurement["torch.matmul"] for measurement in peaks)
    for result in results:
        result["mfu"] = result["flops_per_second"] / peak
        result["mfu_vs_torch_matmul"] = result["flops_per_second"] / torch_matmul_peak
    report = {
        "machine": info,
        "load_average_at_end": os.getloadavg(),
        "matmul_peak_flops": peak,
        "matmul_peak_measurements": peaks,
        "peak_dtype": str(torch.bfloat16 if device.type == "cuda" else torch.float32),
        "arguments": asdict(args),
        "sizes": sizes,
        "clock": args.clock,
        "results": results,
    }
    table = results_table(results, args.clock, show_torch_matmul_mfu=len(peaks[0]) > 1)
    print("\n" + table)
    if args.json_output:
        Path(args.json_output).write_text(json.dumps(report, indent=2))
        print(f"\nWrote {args.json_output}")
    if args.update_results:
        update_results_section(Path(args.results_file), RESULTS_SECTION, results_markdown(report, table))
        print(f"Updated section '{RESULTS_SECTION}' of {args.results_file}")
    return report


def ours_tokens_per_second(args: TrainingSpeedArguments) -> dict[str, float]:
    """Training tokens/s of our models alone (no reference), for benchmarks that only need that number."""
    device = torch.device(args.device)
    speeds = {}
    for family in args.families:
        family_args = arguments_for(family, args)
        torch.manual_seed(args.seed)
        pair = build_pair(family, family_args)
        step = TrainingStep(pair.ours, make_batch(pair.objective, family_args, device), device)
        times = interleaved_step_times({family: step}, args, device)[family][args.clock]
        speeds[family] = family_args.batch_size * family_args.seq_len / median_and_spread(times)[0]
        print(f"  {family}: {speeds[family]:,.0f} training tokens/s", flush=True)
        del step, pair
    return speeds


def paired_speed_ratio(model_seconds: list[float], reference_seconds: list[float]) -> float:
    """Median over rounds of reference time / model time: each round ran both models back to back, so the
    per-round ratio cancels slow drifts in machine load better than a ratio of medians."""
    return statistics.median(ref / model for model, ref in zip(model_seconds, reference_seconds, strict=True))


def results_table(results: list[dict], clock: str, show_torch_matmul_mfu: bool) -> str:
    reference_seconds = {r["family"]: r["step_seconds"][clock] for r in results if not r["is_ours"]}
    rows = []
    for r in results:
        ratio = paired_speed_ratio(r["step_seconds"][clock], reference_seconds[r["family"]])
        rows.append(
            (
                r["family"],
                f"**{r['model']}**" if r["is_ours"] else r["model"],
                f"{r['parameters'] / 1e6:.2f} M",
                f"{r['batch_size']} x {r['seq_len']}",
                f"{r['flops_per_token'] / 1e6:.1f} M",
                f"{r['median_step_seconds'] * 1000:.0f} ({r['relative_iqr']:.0%})",
                f"{r['tokens_per_second']:,.0f}",
                si(r["flops_per_second"], "FLOP/s"),
                f"{r['mfu']:.1%}",
                f"{ratio:.2f}x",
            )
            + ((f"{r['mfu_vs_torch_matmul']:.1%}",) if show_torch_matmul_mfu else ())
            + ((f"{r['wall_tokens_per_second']:,.0f}",) if clock == "cpu" else ())
        )
    headers = [
        "family",
        "model",
        "params",
        "batch x seq",
        "train FLOPs/token",
        "median step ms (IQR)" if clock == "wall" else "median step CPU ms (IQR)",
        "tokens/s" if clock == "wall" else "tokens per CPU-second",
        "achieved",
        "MFU",
        "speed vs built-in (paired median)",
    ]
    if show_torch_matmul_mfu:
        headers.append("MFU vs torch.matmul peak")
    if clock == "cpu":
        headers.append("elapsed tokens/s (shared machine)")
    return markdown_table(headers, rows)


def results_markdown(report: dict, table: str) -> str:
    args = report["arguments"]
    device = args["device"]
    precision = "bf16 autocast" if device.startswith("cuda") else "fp32"
    one, five, fifteen = report["load_average_at_end"]
    return "\n\n".join(
        [
            f"Training step = forward + backward + AdamW step (Trainer's default optimizer), {precision} on "
            f"{device}, sdpa attention for both models, the same batch for both. Models of each pair are "
            f"interleaved step by step in one process; {args['warmup_steps']} warm-up step(s) excluded, median "
            f"of {args['timed_steps']} timed steps (IQR / median in brackets). Sizes"
            + (
                " (from the recipes " + ", ".join(f"`{path}`" for path in args["recipes"]) + ")"
                if args["recipes"]
                else ""
            )
            + ":\n\n"
            + "\n".join(f"- {family}: {description}" for family, description in report["sizes"].items()),
            f"torch threads: {report['machine']['torch threads']}. Clock: **{args['clock']}**"
            + (
                " (CPU time of the process with one torch thread: about the speed on one dedicated core. Time "
                "other processes hold the core is left out; their use of the shared caches and memory bandwidth "
                "is not, so some load effect remains. The peak is measured on the same clock.)"
                if args["clock"] == "cpu"
                else " (elapsed time)."
            ),
            "FLOPs per token = 6 x N_matmul + attention, where N_matmul counts the weights of every matmul a token "
            "goes through (block linears, MLM head dense, the tied LM head; LSTM: 4 x hidden x (input + hidden) "
            "per layer), attention = 6 x layers x seq x hidden (causal) or 12 x layers x seq x hidden "
            "(bidirectional). MFU = FLOPs/token x tokens/s / measured peak.",
            f"Measured peak ({report['peak_dtype']} {args['matmul_size']}^3 matmul, fastest of "
            f"{args['matmul_repeats']}, measured before and after the models): "
            + "; ".join(
                f"{name} {' / '.join(si(m[name], 'FLOP/s') for m in report['matmul_peak_measurements'])}"
                for name in report["matmul_peak_measurements"][0]
            )
            + f". MFU uses the highest, **{si(report['matmul_peak_flops'], 'FLOP/s')}**"
            + (
                "; 'MFU vs torch.matmul peak' uses the torch.matmul peak alone."
                if len(report["matmul_peak_measurements"][0]) > 1
                else "."
            ),
            table,
            machine_lines(report["machine"])
            + f"\n- load average at end: {one:.2f} / {five:.2f} / {fifteen:.2f}",
        ]
    )


def main() -> None:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    (args,) = HfArgumentParser(TrainingSpeedArguments).parse_args_into_dataclasses()
    run(args)


if __name__ == "__main__":
    main()
