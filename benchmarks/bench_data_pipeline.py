"""Throughput of the streaming data pipeline (stream -> tokenize -> pack -> shuffle -> collate) versus training.

The pipeline is the one the pretraining script uses with `--streaming`: `lmrecipes.data.prepare_lm_dataset` on an
`IterableDataset` read from the offline mirror, batched by a torch `DataLoader` with `lm_data_collator` (what the
Trainer does with `dataloader_num_workers=0`: the batch is produced in the training process, between steps).
Three stages are timed over a full pass of each training split:

    read      iterate the raw stream (rows, characters)
    pack      + tokenize and pack into blocks (`build_lm_dataset`)
    full      + shuffle buffer + DataLoader + collator (causal for byte_bpe, masked for wordpiece)

and the full pipeline's tokens/s is set against the training tokens/s of the models fed by that tokenizer (byte_bpe:
lstm_lm, mini_gpt; wordpiece: mini_bert), taken from `bench_training_speed.py --json_output` or, without one,
measured here for our models. With in-process loading every token costs 1/pipeline + 1/training seconds, so
the share of a training step spent waiting for data is training / (training + pipeline) tokens/s. Both elapsed
and CPU time are recorded; the comparison uses the clock of the training numbers (`--clock cpu` there: tokens per
CPU-second on both sides, which is what counts when loading and training share the cores, and is unaffected by
other processes on a shared machine).

Tokenizers (vocab 8000 by default) are trained first on WikiText-2 train with `lmrecipes.tokenization`.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_training_speed.py --json_output /tmp/training_speed.json  # [--threads 1 --clock cpu]
    .venv/bin/python benchmarks/bench_data_pipeline.py --training_json /tmp/training_speed.json --update_results true
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The machines running this have no route to the Hub; the datasets come from the offline mirror.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
if (REPO_ROOT.parent / "shared" / "datasets").is_dir():
    os.environ.setdefault("LMRECIPES_DATA_MIRROR", str(REPO_ROOT.parent / "shared" / "datasets"))

import torch  # noqa: E402
from transformers import HfArgumentParser, PreTrainedTokenizerFast  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training_speed import TrainingSpeedArguments, ours_tokens_per_second  # noqa: E402
from common import (  # noqa: E402
    DEFAULT_RESULTS_FILE,
    machine_info,
    machine_lines,
    markdown_table,
    si,
    update_results_section,
)

from lmrecipes.data import (  # noqa: E402
    DataArguments,
    batch_iterator,
    build_lm_dataset,
    lm_data_collator,
    load_text_dataset,
    prepare_lm_dataset,
)
from lmrecipes.tokenization import train_tokenizer  # noqa: E402

RESULTS_SECTION = "Data pipeline"
TOKENIZER_CORPUS = ("Salesforce/wikitext", "wikitext-2-v1")
FAMILIES_BY_TOKENIZER = {"byte_bpe": ("lstm_lm", "mini_gpt"), "wordpiece": ("mini_bert",)}
OBJECTIVE_BY_TOKENIZER = {"byte_bpe": "causal", "wordpiece": "masked"}


@dataclass
class DataPipelineArguments:
    datasets: list[str] = field(
        default_factory=lambda: ["Salesforce/wikitext:wikitext-2-v1", "stanfordnlp/imdb:plain_text"],
        metadata={
            "help": "Hub ids (read from the mirror) as id:config; the train split of each is streamed."
        },
    )
    tokenizers: list[str] = field(default_factory=lambda: ["byte_bpe", "wordpiece"])
    vocab_size: int = field(default=8000)
    block_size: int = field(default=128)
    batch_size: int = field(default=16, metadata={"help": "Blocks per collated batch (the training batch)."})
    shuffle_buffer_size: int = field(default=10_000, metadata={"help": "DataArguments.shuffle_buffer_size."})
    max_blocks: int | None = field(
        default=None, metadata={"help": "Stop each pass after N blocks (quick runs)."}
    )
    training_json: str | None = field(
        default=None,
        metadata={
            "help": "bench_training_speed.py --json_output file; without it training is measured here."
        },
    )
    update_results: bool = field(default=False)
    results_file: str = field(default=str(DEFAULT_RESULTS_FILE))

    def __post_init__(self) -> None:
        for spec in self.datasets:
            if spec.count(":") > 1:
                raise ValueError(f"--datasets {spec!r}: expected id or id:config.")
        unknown = sorted(set(self.tokenizers) - set(FAMILIES_BY_TOKENIZER))
        if unknown:
            raise ValueError(f"--tokenizers: unknown {unknown}; choose from {list(FAMILIES_BY_TOKENIZER)}.")


def data_arguments(spec: str, args: DataPipelineArguments) -> DataArguments:
    name, _, config = spec.partition(":")
    return DataArguments(
        dataset_name=name,
        dataset_config_name=config or None,
        streaming=True,
        block_size=args.block_size,
        shuffle_buffer_size=args.shuffle_buffer_size,
        max_train_samples=args.max_blocks,
    )


def trained_tokenizer(kind: str, args: DataPipelineArguments) -> tuple[PreTrainedTokenizerFast, float]:
    corpus = load_text_dataset(data_arguments(":".join(TOKENIZER_CORPUS), args), "train")
    start = time.perf_counter()
    texts = itertools.chain.from_iterable(batch_iterator(corpus))
    tokenizer = train_tokenizer(texts, kind, args.vocab_size, model_max_length=args.block_size)
    return tokenizer, time.perf_counter() - start


def time_read(data_args: DataArguments) -> dict[str, float]:
    start = time.perf_counter()
    stream = load_text_dataset(data_args, data_args.train_split)
    setup = time.perf_counter() - start
    rows = characters = 0
    start = time.perf_counter()
    for batch in stream.iter(batch_size=1000):
        rows += len(batch[data_args.text_column])
        characters += sum(len(text) for text in batch[data_args.text_column])
    return {
        "setup_seconds": setup,
        "seconds": time.perf_counter() - start,
        "rows": rows,
        "characters": characters,
    }


def time_pack(data_args: DataArguments, tokenizer) -> dict[str, float]:
    stream = load_text_dataset(data_args, data_args.train_split)
    blocks = build_lm_dataset(stream, tokenizer, data_args.block_size, data_args.text_column)
    if data_args.max_train_samples is not None:
        blocks = blocks.take(data_args.max_train_samples)
    tokens = 0
    start = time.perf_counter()
    for block in blocks:
        tokens += len(block["input_ids"])
    return {"seconds": time.perf_counter() - start, "tokens": tokens}


def time_full(data_args: DataArguments, tokenizer, objective: str, batch_size: int) -> dict[str, float]:
    """prepare_lm_dataset + DataLoader + collator, as the Trainer iterates it; the clock starts at the set-up.

    Both elapsed and process CPU time (all threads: the Rust tokenizer may use several) are recorded.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    blocks = prepare_lm_dataset(data_args, tokenizer, data_args.train_split)
    loader = torch.utils.data.DataLoader(
        blocks, batch_size=batch_size, collate_fn=lm_data_collator(tokenizer, objective, seed=0)
    )
    tokens = batches = 0
    first_batch_seconds = None
    for batch in loader:
        if first_batch_seconds is None:
            first_batch_seconds = time.perf_counter() - start
        tokens += batch["input_ids"].numel()
        batches += 1
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "first_batch_seconds": first_batch_seconds,
        "tokens": tokens,
        "batches": batches,
    }


def training_speeds(args: DataPipelineArguments) -> tuple[dict[str, float], str, str]:
    """Our models' training tokens/s, where they come from, and their clock ("wall" or "cpu")."""
    families = sorted({family for kind in args.tokenizers for family in FAMILIES_BY_TOKENIZER[kind]})
    if args.training_json:
        report = json.loads(Path(args.training_json).read_text())
        speeds = {r["family"]: r["tokens_per_second"] for r in report["results"] if r["is_ours"]}
        missing = sorted(set(families) - set(speeds))
        if missing:
            raise ValueError(f"--training_json {args.training_json} has no result for {missing}.")
        clock = report.get("clock", "wall")
        return speeds, f"from `{args.training_json}` ({report['machine']['date']}, {clock} clock)", clock
    print(
        "No --training_json: measuring our models' training tokens/s (recipe sizes, CPU fp32) ...", flush=True
    )
    training_args = TrainingSpeedArguments(
        families=families, vocab_size=args.vocab_size, seq_len=args.block_size, batch_size=args.batch_size
    )
    training_args.warmup_steps, training_args.timed_steps = 2, 5
    source = "measured in this run (default sizes of bench_training_speed, wall clock)"
    return ours_tokens_per_second(training_args), source, "wall"


def main() -> None:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    (args,) = HfArgumentParser(DataPipelineArguments).parse_args_into_dataclasses()
    info = machine_info("cpu")

    rows = []
    tokenizer_seconds = {}
    for kind in args.tokenizers:
        print(f"Training the {kind} tokenizer (vocab {args.vocab_size}) on WikiText-2 train ...", flush=True)
        tokenizer, tokenizer_seconds[kind] = trained_tokenizer(kind, args)
        for spec in args.datasets:
            data_args = data_arguments(spec, args)
            print(f"  {spec}: read ...", flush=True)
            read = time_read(data_args)
            print(f"  {spec}: tokenize + pack ...", flush=True)
            pack = time_pack(data_args, tokenizer)
            print(f"  {spec}: full pipeline ...", flush=True)
            full = time_full(data_args, tokenizer, OBJECTIVE_BY_TOKENIZER[kind], args.batch_size)
            rows.append({"tokenizer": kind, "dataset": spec, "read": read, "pack": pack, "full": full})
            print(
                f"    {full['tokens']:,} tokens; pack {pack['tokens'] / pack['seconds']:,.0f} tokens/s, "
                f"full {full['tokens'] / full['seconds']:,.0f} tokens/s",
                flush=True,
            )

    speeds, speed_source, clock = training_speeds(args)
    seconds_key = "cpu_seconds" if clock == "cpu" else "seconds"
    pipeline_table = markdown_table(
        [
            "tokenizer",
            "dataset (train split)",
            "rows",
            "read rows/s",
            "tokens",
            "chars/token",
            "tokenize+pack tokens/s",
            "full pipeline tokens/s",
            "full pipeline tokens per CPU-second",
            "first batch after",
        ],
        [
            (
                r["tokenizer"],
                r["dataset"],
                f"{r['read']['rows']:,}",
                si(r["read"]["rows"] / r["read"]["seconds"]),
                f"{r['full']['tokens']:,}",
                # Only for whole passes: --max_blocks stops the packing early but not the read.
                f"{r['read']['characters'] / r['pack']['tokens']:.2f}" if args.max_blocks is None else "n/a",
                f"{r['pack']['tokens'] / r['pack']['seconds']:,.0f}",
                f"{r['full']['tokens'] / r['full']['seconds']:,.0f}",
                f"{r['full']['tokens'] / r['full']['cpu_seconds']:,.0f}",
                f"{r['full']['first_batch_seconds']:.1f} s",
            )
            for r in rows
        ],
    )
    comparison_rows = []
    for r in rows:
        pipeline = r["full"]["tokens"] / r["full"][seconds_key]
        for family in FAMILIES_BY_TOKENIZER[r["tokenizer"]]:
            training = speeds[family]
            comparison_rows.append(
                (
                    r["dataset"],
                    r["tokenizer"],
                    family,
                    f"{pipeline:,.0f}",
                    f"{training:,.0f}",
                    f"**{pipeline / training:.0f}x**",
                    f"{training / (training + pipeline):.1%}",
                )
            )
    comparison_table = markdown_table(
        [
            "dataset",
            "tokenizer",
            "model",
            f"pipeline tokens/s ({clock} clock)",
            f"training tokens/s ({clock} clock)",
            "pipeline / training",
            "step time spent on data (in-process)",
        ],
        comparison_rows,
    )
    print("\n" + pipeline_table + "\n\n" + comparison_table)

    if args.update_results:
        one, five, fifteen = os.getloadavg()
        tokenizer_times = ", ".join(f"{kind} {seconds:.1f} s" for kind, seconds in tokenizer_seconds.items())
        body = "\n\n".join(
            [
                "Streaming `IterableDataset` from the offline mirror, full pass over each train split: read -> "
                f"tokenize -> pack into blocks of {args.block_size} (`build_lm_dataset`) -> shuffle buffer of "
                f"{args.shuffle_buffer_size} blocks -> `DataLoader` (batch {args.batch_size}, in-process as "
                "the Trainer's default `dataloader_num_workers=0`) -> `lm_data_collator` (causal for byte_bpe, "
                "masked for wordpiece). Full-pipeline time includes set-up (loading, checks) and filling the "
                "shuffle buffer before the first batch. Tokenizers: vocab "
                f"{args.vocab_size}, trained on WikiText-2 train ({tokenizer_times}).",
                pipeline_table,
                f"Training tokens/s: our models at the recipe sizes, {speed_source}. The last column is "
                "training / (training + pipeline): the share of step time the in-process pipeline would take.",
                comparison_table,
                machine_lines(info) + f"\n- load average at end: {one:.2f} / {five:.2f} / {fifteen:.2f}",
            ]
        )
        update_results_section(Path(args.results_file), RESULTS_SECTION, body)
        print(f"Updated section '{RESULTS_SECTION}' of {args.results_file}")


if __name__ == "__main__":
    main()
