"""Generation speed: what the cache buys mini_gpt, and whether lstm_lm's time per new token stays flat.

mini_gpt and GPT2LMHeadModel of the same size (the WikiText-2 recipe's width and depth, random weights, positions
raised to fit the prompt and the new tokens) generate greedily with and without the cache; lstm_lm (its WikiText-2
recipe's size) generates 1,024 tokens while a logits processor stamps the time of each one, so that the time per
token early and late in the generation can be compared. Every generation runs to its full length (no eos).

    .venv/bin/python benchmarks/bench_generation.py --update_results true
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
from common import (
    DEFAULT_RESULTS_FILE,
    clock_seconds,
    machine_info,
    machine_lines,
    markdown_table,
    update_results_section,
)
from transformers import HfArgumentParser, LogitsProcessor, LogitsProcessorList
from twins import built_in_twin

from lmrecipes.models.lstm_lm import LSTMLMConfig, LSTMLMForCausalLM
from lmrecipes.models.mini_gpt import MiniGPTConfig, MiniGPTForCausalLM

RESULTS_SECTION = "Generation speed"
# A BPE vocabulary, as GPT-2 has: the WikiText-2 recipes' word vocabulary and adaptive head have no GPT-2 twin.
VOCAB_SIZE = 8000


@dataclass
class GenerationBenchmarkArguments:
    new_tokens: int = field(default=256, metadata={"help": "New tokens per mini_gpt generation."})
    lstm_new_tokens: int = field(default=1024, metadata={"help": "New tokens of the lstm_lm generation."})
    prompt_length: int = field(default=16)
    early_tokens: str = field(default="16-32", metadata={"help": "Token range of the early lstm_lm timing."})
    repeats: int = field(default=3, metadata={"help": "Runs per measurement; the median is kept."})
    threads: int = field(default=1, metadata={"help": "torch threads (1: steady on a shared machine)."})
    clock: str = field(default="cpu", metadata={"help": "'cpu' (process CPU time) or 'wall'."})
    update_results: bool = field(default=False, metadata={"help": "Write the tables into RESULTS.md."})
    results_file: str = field(default=str(DEFAULT_RESULTS_FILE))


class TokenClock(LogitsProcessor):
    """Stamps the clock once per generated token (generate calls the processors once per step)."""

    def __init__(self, clock: str):
        self.clock, self.stamps = clock, []

    def __call__(self, input_ids, scores):
        self.stamps.append(clock_seconds(self.clock))
        return scores


def gpt_pair(positions: int) -> dict[str, torch.nn.Module]:
    sizes = dict(vocab_size=VOCAB_SIZE, hidden_size=192, num_hidden_layers=4, num_attention_heads=4)
    torch.manual_seed(0)
    ours = MiniGPTForCausalLM(
        MiniGPTConfig(**sizes, intermediate_size=768, max_position_embeddings=positions)
    )
    builtin = built_in_twin(ours.config)
    return {"mini_gpt": ours.eval(), "GPT2LMHeadModel": builtin.eval()}


def generate(model, prompt: torch.Tensor, new_tokens: int, use_cache: bool, processors=None) -> None:
    with torch.inference_mode():
        output = model.generate(
            prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=use_cache,
            eos_token_id=None, pad_token_id=0, logits_processor=processors,
        )  # fmt: skip
    assert output.shape[1] == prompt.shape[1] + new_tokens


def median_seconds(function, repeats: int, clock: str) -> float:
    samples = []
    for _ in range(repeats):
        start = clock_seconds(clock)
        function()
        samples.append(clock_seconds(clock) - start)
    return statistics.median(samples)


def main() -> None:
    (args,) = HfArgumentParser(GenerationBenchmarkArguments).parse_args_into_dataclasses()
    torch.set_num_threads(args.threads)
    info = machine_info("cpu")
    prompt = torch.randint(1, VOCAB_SIZE, (1, args.prompt_length), generator=torch.Generator().manual_seed(0))

    cache_rows = []
    for name, model in gpt_pair(args.prompt_length + args.new_tokens).items():
        generate(model, prompt, 8, use_cache=True)  # warm-up
        seconds = {
            use_cache: median_seconds(
                lambda model=model, use_cache=use_cache: generate(model, prompt, args.new_tokens, use_cache),
                args.repeats,
                args.clock,
            )
            for use_cache in (True, False)
        }
        cache_rows.append(
            [name, f"{args.new_tokens / seconds[True]:.0f}", f"{args.new_tokens / seconds[False]:.0f}",
             f"{seconds[False] / seconds[True]:.2f}x"]
        )  # fmt: skip
    cache_table = markdown_table(
        ["model", "tokens/s cached", "tokens/s uncached", "cached / uncached"], cache_rows
    )

    torch.manual_seed(0)
    lstm = LSTMLMForCausalLM(
        LSTMLMConfig(vocab_size=VOCAB_SIZE, embedding_size=256, hidden_size=256, num_hidden_layers=2)
    ).eval()
    generate(lstm, prompt, 8, use_cache=True)  # warm-up
    first, last = (int(bound) for bound in args.early_tokens.split("-"))
    early, late = [], []
    for _ in range(args.repeats):
        token_clock = TokenClock(args.clock)
        generate(lstm, prompt, args.lstm_new_tokens, True, LogitsProcessorList([token_clock]))
        gaps = [
            later - earlier
            for earlier, later in zip(token_clock.stamps, token_clock.stamps[1:], strict=False)
        ]
        early.append(statistics.mean(gaps[first - 1 : last - 1]))  # gap i-1 -> i is the time of token i
        late.append(statistics.mean(gaps[-(last - first) :]))
    early_ms, late_ms = statistics.median(early) * 1e3, statistics.median(late) * 1e3
    span = args.lstm_new_tokens
    lstm_table = markdown_table(
        ["model", f"ms/token, tokens {first}-{last}", f"ms/token, tokens {span - (last - first)}-{span}", "late / early"],
        [["lstm_lm", f"{early_ms:.2f}", f"{late_ms:.2f}", f"{late_ms / early_ms:.3f}"]],
    )  # fmt: skip

    print(cache_table, "\n", lstm_table, sep="\n")
    if args.update_results:
        body = (
            f"Greedy generation, batch 1, prompt of {args.prompt_length} tokens, every generation to its full "
            f"length; {args.threads} torch thread(s), {args.clock} clock, median of {args.repeats}. mini_gpt and "
            "GPT2LMHeadModel: hidden 192, 4 layers, 4 heads, intermediate 768 (the WikiText-2 recipe's), a "
            f"vocabulary of 8,000, {args.new_tokens} new tokens. lstm_lm: 2 x 256, vocabulary 8,000, "
            f"{args.lstm_new_tokens} new tokens, the time of each token stamped by a logits processor.\n\n"
            + cache_table
            + "\n\n"
            + lstm_table
            + "\n\n"
            + machine_lines(info)
        )
        update_results_section(Path(args.results_file), RESULTS_SECTION, body)


if __name__ == "__main__":
    main()
