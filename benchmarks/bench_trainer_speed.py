"""Training speed through the Trainer: our recipes' fast path, ours plain, and the built-in twin as the examples run it.

For each pretraining recipe given, three runs on the recipe's own data (its corpus, tokenizer kind and vocabulary
size, block size, batch, dropout and precision) take the same number of steps:

    ours, fast     RecipeTrainer, our model, the recipe with the speed-ups under test (`--fast`, e.g. torch_compile)
    ours, plain    RecipeTrainer, our model, the recipe without them (`--plain` turns off those the recipe sets,
                   e.g. --sparse_prediction false)
    built-in       transformers' Trainer with its defaults and the model of identical size that ships with
                   transformers (GPT2LMHeadModel, BertForMaskedLM) or, for lstm_lm, a plain nn.LSTM language
                   model, collated as transformers' examples do (run_clm: labels in the blocks and
                   default_data_collator; run_mlm: DataCollatorForLanguageModeling)

Ours runs in the recipe's own trainer: TBPTTTrainer (parallel streams, state carried) for a `truncated_bptt` recipe,
RecipeTrainer otherwise.

The three alternate, `--rounds` times each, in one process; a callback stamps the end of every step, so a step's
time includes data loading, logging and the optimizer. Warm-up steps (compilation included) are left out. Peak
memory of a training step is measured in a fresh process per run: the peak resident set on CPU,
torch.cuda.max_memory_allocated on a GPU.

    .venv/bin/python benchmarks/bench_trainer_speed.py --recipes recipes/mini_gpt/wikitext2.yaml --update_results true
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from transformers import (
    DataCollatorForLanguageModeling,
    HfArgumentParser,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEFAULT_RESULTS_FILE,
    machine_info,
    machine_lines,
    markdown_table,
    si,
    update_results_section,
)
from twins import built_in_twin  # noqa: E402  (benchmarks/ is a folder of scripts)

from lmrecipes import data  # noqa: E402
from lmrecipes.data import DataArguments  # noqa: E402
from lmrecipes.families import FAMILIES  # noqa: E402
from lmrecipes.modeling import ModelArguments, build_config, build_pretraining_model  # noqa: E402
from lmrecipes.recipe import parse_recipe  # noqa: E402
from lmrecipes.tbptt import TBPTTTrainer  # noqa: E402
from lmrecipes.throughput import (  # noqa: E402
    attention_flops_per_token,
    matmul_weight_count,
    measured_matmul_peaks,
    training_flops_per_token,
)
from lmrecipes.tokenization import train_tokenizer  # noqa: E402
from lmrecipes.training import RecipeTrainer, RecipeTrainingArguments  # noqa: E402

RESULTS_SECTION = "Training speed through the Trainer"
VARIANTS = ("ours, fast", "ours, plain", "built-in")
MLM_PROBABILITY = 0.15  # lmrecipes.data.lm_data_collator's and run_mlm's default


@dataclass
class TrainerSpeedArguments:
    recipes: list[str] = field(
        default_factory=lambda: ["recipes/mini_gpt/wikitext2.yaml"], metadata={"help": "Pretraining recipes."}
    )
    fast: str = field(
        default="--torch_compile true",
        metadata={
            "help": "Recipe overrides that make 'ours, fast' (the speed-ups under test), as one string."
        },
    )
    plain: str = field(
        default="",
        metadata={
            "help": "Recipe overrides that make 'ours, plain' (speed-ups the recipe sets, off), as one string."
        },
    )
    warmup_steps: int = field(
        default=5, metadata={"help": "Steps per run left out (compilation, warm caches)."}
    )
    timed_steps: int = field(default=30, metadata={"help": "Timed steps per run."})
    rounds: int = field(default=3, metadata={"help": "Times each variant runs; the variants alternate."})
    max_blocks: int = field(
        default=4096, metadata={"help": "Training blocks prepared (enough for the steps)."}
    )
    tokenizer_rows: int | None = field(
        default=None,
        metadata={"help": "Train the tokenizer on the first N rows only (default: the whole split)."},
    )
    memory: bool = field(
        default=True, metadata={"help": "Also measure peak memory, a fresh process per run."}
    )
    threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (default: torch's)."})
    json_output: str | None = field(default=None)
    update_results: bool = field(default=False, metadata={"help": f"Write the '{RESULTS_SECTION}' section."})
    results_file: str = field(default=str(DEFAULT_RESULTS_FILE))
    # Internal: run one variant for the peak-memory measurement and print its peak.
    memory_probe: str | None = field(default=None, metadata={"help": "(internal) recipe|variant to probe."})


class StepClock(TrainerCallback):
    """The time of each training step, from the end of the previous one (data loading and logging included)."""

    def __init__(self):
        self.stamps: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.stamps = [time.perf_counter()]

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())

    def step_seconds(self, skip: int) -> list[float]:
        return [later - earlier for earlier, later in zip(self.stamps, self.stamps[1:], strict=False)][skip:]


@dataclass
class Setup:
    recipe: str
    model_args: ModelArguments  # the recipe's own: tokenizer, data and the built-in twin
    data_args: DataArguments
    training_args: RecipeTrainingArguments
    ours: dict[
        str, tuple[ModelArguments, RecipeTrainingArguments]
    ]  # "ours, fast" / "ours, plain" -> arguments
    tokenizer: object
    blocks: object
    causal: bool


def prepare(recipe: str, args: TrainerSpeedArguments, output_dir: str) -> Setup:
    common = [recipe, "--output_dir", output_dir, "--max_train_samples", str(args.max_blocks)]
    common += ["--max_steps", str(args.warmup_steps + args.timed_steps), "--save_strategy", "no"]
    common += [
        "--eval_strategy",
        "no",
        "--eval_on_start",
        "false",
        "--logging_steps",
        "10",
        "--disable_tqdm",
        "true",
    ]
    types = (ModelArguments, DataArguments, RecipeTrainingArguments)
    model_args, data_args, training_args, _ = parse_recipe(types, common)
    ours = {}
    for variant, overrides in (("ours, fast", args.fast), ("ours, plain", args.plain)):
        variant_model_args, _, variant_training_args, _ = parse_recipe(types, common + shlex.split(overrides))
        ours[variant] = (variant_model_args, variant_training_args)
    split = data.load_text_dataset(data_args, data_args.train_split)
    tokenizer = train_tokenizer(
        (row for batch in data.batch_iterator(split, data_args.text_column) for row in batch),
        kind=model_args.tokenizer_kind,
        vocab_size=model_args.tokenizer_vocab_size,
    )
    config = build_config(model_args, tokenizer)
    blocks = data.prepare_lm_dataset(
        data_args,
        tokenizer,
        data_args.train_split,
        model_max_positions=getattr(config, "max_position_embeddings", None),
    )
    causal = FAMILIES[model_args.model_type].objective == "causal"
    return Setup(recipe, model_args, data_args, training_args, ours, tokenizer, blocks, causal)


def built_in_twin_of(setup: Setup) -> torch.nn.Module:
    """transformers' model of the same size as ours (parameter counts asserted equal)."""
    ours = build_pretraining_model(setup.model_args, setup.tokenizer)
    try:
        twin = built_in_twin(ours.config)
    except ValueError as error:
        raise ValueError(f"{setup.recipe}: {error}") from error
    ours_count = sum(p.numel() for p in ours.parameters())
    twin_count = sum(p.numel() for p in twin.parameters())
    if ours_count != twin_count and not getattr(ours.config, "adaptive_softmax_cutoffs", None):
        raise AssertionError(f"{setup.recipe}: ours has {ours_count:,} parameters, the twin {twin_count:,}")
    return twin


def flops_per_token(setup: Setup, variant: str) -> float:
    """Training FLOPs per token of the model a run trains, counting what it computes: a sparse-prediction head at
    the masked positions only, the built-in twin's full head everywhere (with our attention count: the same
    attention)."""
    if variant == "built-in":
        twin_weights = matmul_weight_count(built_in_twin_of(setup))
        config = build_config(setup.model_args, setup.tokenizer)  # the attention count needs only the sizes
        return 6 * twin_weights + attention_flops_per_token(config, setup.data_args.block_size)
    model = build_pretraining_model(setup.ours[variant][0], setup.tokenizer)
    labelled_fraction = 1.0 if setup.causal else MLM_PROBABILITY
    return training_flops_per_token(model, setup.data_args.block_size, None, labelled_fraction)


def make_trainer(setup: Setup, variant: str, clock: StepClock) -> Trainer:
    torch.manual_seed(setup.training_args.seed)
    if variant == "built-in":
        # transformers' defaults; only what fixes the run's shape and schedule is taken from the recipe.
        recipe_args = setup.training_args
        # The recipe's learning rate only where the recipe uses the Trainer's default optimizer (AdamW), not a rate
        # meant for another one (the LSTM recipe's SGD at 20).
        defaults = {f.name: f.default for f in fields(TrainingArguments)}
        same_optimizer = recipe_args.optim == defaults["optim"]
        args = TrainingArguments(
            output_dir=recipe_args.output_dir,
            per_device_train_batch_size=recipe_args.per_device_train_batch_size,
            max_steps=recipe_args.max_steps,
            learning_rate=recipe_args.learning_rate if same_optimizer else defaults["learning_rate"],
            bf16=recipe_args.bf16,
            use_cpu=recipe_args.use_cpu,
            save_strategy="no",
            logging_steps=recipe_args.logging_steps,
            disable_tqdm=True,
            seed=recipe_args.seed,
        )
        if setup.causal:  # run_clm: labels stored with the blocks, default_data_collator
            blocks = setup.blocks.map(lambda batch: {"labels": batch["input_ids"]}, batched=True)
            collator = default_data_collator
        else:  # run_mlm
            blocks = setup.blocks
            collator = DataCollatorForLanguageModeling(setup.tokenizer, mlm_probability=MLM_PROBABILITY)
        return Trainer(
            model=built_in_twin_of(setup),
            args=args,
            train_dataset=blocks,
            data_collator=collator,
            callbacks=[clock],
        )
    model_args, args = setup.ours[variant]
    objective = FAMILIES[model_args.model_type].objective
    # As scripts/pretrain.py picks it.
    trainer_class = TBPTTTrainer if model_args.truncated_bptt else RecipeTrainer
    return trainer_class(
        model=build_pretraining_model(model_args, setup.tokenizer),
        args=args,
        train_dataset=setup.blocks,
        processing_class=setup.tokenizer,
        data_collator=data.lm_data_collator(setup.tokenizer, objective),
        callbacks=[clock],
    )


def peak_memory_of(recipe: str, variant: str, args: TrainerSpeedArguments) -> float:
    """Peak memory (bytes) of a short run of one variant, in a fresh process."""
    command = [sys.executable, __file__, "--memory_probe", f"{recipe}|{variant}", "--recipes", recipe]
    command += [
        "--warmup_steps",
        "2",
        "--timed_steps",
        "3",
        "--max_blocks",
        str(args.max_blocks),
        f"--fast={args.fast}",  # with '=': a value that starts with '--' is not an option
        f"--plain={args.plain}",
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(run.stdout.strip().splitlines()[-1])


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def reset_peak_memory() -> None:
    """Start the process's peak resident set (VmHWM) afresh: Linux resets it when "5" is written to clear_refs
    (ru_maxrss, the usual measure, cannot be reset)."""
    Path("/proc/self/clear_refs").write_text("5")


def probe_memory(args: TrainerSpeedArguments) -> None:
    recipe, variant = args.memory_probe.split("|")
    with tempfile.TemporaryDirectory() as output_dir:
        setup = prepare(recipe, args, output_dir)
        reset_peak_memory()  # preparing the data (tokenizer training) peaks above a small model's training
        before = _status_kib("VmRSS")
        make_trainer(setup, variant, StepClock()).train()
        if torch.cuda.is_available():
            print(torch.cuda.max_memory_allocated())
        else:  # the peak resident set while training, less what the process held before the model was built
            print((_status_kib("VmHWM") - before) * 1024)


def run(args: TrainerSpeedArguments) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info = machine_info(device.type)
    dtype = torch.float32
    peaks = measured_matmul_peaks(device, dtype, size=2048 if device.type == "cpu" else 8192)
    peak = max(peaks.values())
    results = []
    for recipe in args.recipes:
        with tempfile.TemporaryDirectory() as output_dir:
            setup = prepare(recipe, args, output_dir)
            seconds: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            round_ratios: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            trainers: dict[str, str] = {}
            for round_index in range(args.rounds):
                medians = {}
                order = VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    clock = StepClock()
                    trainer = make_trainer(setup, variant, clock)
                    trainers[variant] = type(trainer).__name__
                    trainer.train()
                    steps = clock.step_seconds(skip=args.warmup_steps)
                    seconds[variant] += steps
                    medians[variant] = statistics.median(steps)
                    print(
                        f"{recipe} round {round_index}: {variant} {medians[variant] * 1000:.1f} ms/step",
                        flush=True,
                    )
                for variant in VARIANTS:
                    round_ratios[variant].append(medians["built-in"] / medians[variant])
            tokens_per_step = setup.training_args.per_device_train_batch_size * setup.data_args.block_size
            flops = {variant: flops_per_token(setup, variant) for variant in VARIANTS}
            for variant in VARIANTS:
                median = statistics.median(seconds[variant])
                tokens_per_second = tokens_per_step / median
                results.append(
                    {
                        "recipe": recipe,
                        "variant": variant,
                        "model": setup.model_args.model_type
                        if variant != "built-in"
                        else type(built_in_twin_of(setup)).__name__,
                        "trainer": trainers[variant],
                        "median_step_seconds": median,
                        "tokens_per_second": tokens_per_second,
                        "mfu": flops[variant] * tokens_per_second / peak,
                        "speed_vs_built_in": statistics.median(round_ratios[variant]),
                        "peak_memory_bytes": peak_memory_of(recipe, variant, args) if args.memory else None,
                    }
                )
    report = {"machine": info, "peaks": peaks, "arguments": vars(args), "results": results}
    table = results_table(results)
    print("\n" + table)
    if args.json_output:
        Path(args.json_output).write_text(json.dumps(report, indent=2))
    if args.update_results:
        update_results_section(Path(args.results_file), RESULTS_SECTION, results_markdown(report, table))
    return report


def results_table(results: list[dict]) -> str:
    rows = [
        (
            f"`{r['recipe']}`",
            f"**{r['variant']}**" if r["variant"] == "ours, fast" else r["variant"],
            r["model"],
            f"{r['median_step_seconds'] * 1000:.1f}",
            f"{r['tokens_per_second']:,.0f}",
            f"{r['mfu']:.1%}",
            f"{r['speed_vs_built_in']:.2f}x",
            si(r["peak_memory_bytes"], "B") if r["peak_memory_bytes"] is not None else "-",
        )
        for r in results
    ]
    headers = [
        "recipe",
        "run",
        "model",
        "median step ms",
        "tokens/s",
        "MFU",
        "speed vs built-in",
        "peak memory",
    ]
    return markdown_table(headers, rows)


def results_markdown(report: dict, table: str) -> str:
    args = report["arguments"]
    peaks = ", ".join(f"{name} {si(flops, 'FLOP/s')}" for name, flops in report["peaks"].items())
    return "\n\n".join(
        [
            f"Each recipe's model trained through the Trainer on the recipe's own data, {args['warmup_steps']} "
            f"warm-up + {args['timed_steps']} timed steps per run, the three runs alternating {args['rounds']} "
            f"times in one process; median step time (from the end of one step to the end of the next: data, "
            f"logging and optimizer included). 'ours, fast' is the recipe with `{args['fast'] or '(nothing)'}`, "
            f"'ours, plain' the recipe with `{args['plain'] or '(nothing)'}`. Speed vs built-in: median over rounds "
            "of the built-in's median step time / this run's. MFU: the FLOPs each run's model computes per token (a "
            f"sparse-prediction head at the {MLM_PROBABILITY:.0%} masked positions only; an adaptive softmax's head "
            f"cluster, not its tails) against the measured matmul peak ({peaks}; the highest counts). Peak memory: "
            "a fresh process per run, its peak resident set while training (VmHWM, reset after the data is ready) less what it held before the model was built "
            "(CPU), or torch.cuda.max_memory_allocated (GPU).",
            table,
            machine_lines(report["machine"]),
        ]
    )


def main() -> None:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    (args,) = HfArgumentParser(TrainerSpeedArguments).parse_args_into_dataclasses()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.memory_probe:
        probe_memory(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
