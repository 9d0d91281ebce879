"""Language-model scores in the units papers publish, whatever the tokenizer: word-level perplexity on WikiText-2
and PTB, bits per character on Tiny Shakespeare.

The whole official split is scored as one stream, every token once, and the total NLL is divided by a count that
does not depend on the tokenizer (words + lines, or characters). docs/scoring.md gives the windowing and the
counting conventions that make the figures comparable with the literature.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmrecipes import data
from lmrecipes.errors import RecipeError
from lmrecipes.families import is_masked_lm
from lmrecipes.modeling import load_pretrained, max_positions

logger = logging.getLogger(__name__)

Unit = Literal["word", "char", "token"]


@dataclass(frozen=True)
class PublishedBenchmark:
    """How a dataset's language-modelling results are published: the unit and the column holding the text."""

    unit: Unit
    text_column: str


# (Hub dataset name without its owner, config) -> benchmark. Only the tokenized WikiText configs are word-level
# benchmarks: the raw ones keep punctuation attached to words, so their words are not the published words.
PUBLISHED_BENCHMARKS: dict[tuple[str, str | None], PublishedBenchmark] = {
    ("wikitext", "wikitext-2-v1"): PublishedBenchmark("word", "text"),
    ("wikitext", "wikitext-103-v1"): PublishedBenchmark("word", "text"),
    ("ptb_text_only", "penn_treebank"): PublishedBenchmark("word", "sentence"),
    ("ptb_text_only", None): PublishedBenchmark("word", "sentence"),
    ("tiny_shakespeare", None): PublishedBenchmark("char", "text"),
    ("tiny_shakespeare", "default"): PublishedBenchmark("char", "text"),
}

# Tokens per forward pass: one chunk of a recurrent model, or this many tokens' worth of windows (at least one).
DEFAULT_TOKENS_PER_FORWARD = 8192


def published_benchmark(
    dataset_name: str | None, dataset_config_name: str | None
) -> PublishedBenchmark | None:
    """The benchmark a dataset is, e.g. ("Salesforce/wikitext", "wikitext-2-v1") -> word-level; None if unknown.

    Matches on the name without its owner, so "wikitext", "Salesforce/wikitext" and a mirror path all count.
    """
    if not dataset_name:
        return None
    short_name = dataset_name.rstrip("/").rsplit("/", 1)[-1]
    return PUBLISHED_BENCHMARKS.get((short_name, dataset_config_name))


# ---------------------------------------------------------------------------------------------------------------------
# Text -> token stream, and the tokenizer-free counts
# ---------------------------------------------------------------------------------------------------------------------


def tokenize_as_stream(
    texts: Iterable[str], tokenizer: PreTrainedTokenizerBase, batch_size: int = data.PACKING_BATCH_SIZE
) -> list[int]:
    """The split as one list of token ids, rows joined exactly as `data.build_lm_dataset` joins them ("auto")."""
    stream: list[int] = []
    batch: list[str] = []

    def flush() -> None:
        for ids in data.tokenize_rows(batch, tokenizer):
            stream.extend(ids)
        batch.clear()

    for text in texts:
        batch.append(text or "")
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return stream


@dataclass(frozen=True)
class TextCounts:
    """Tokenizer-free size of a text: rows (= lines), whitespace-separated words and characters."""

    num_lines: int
    num_words: int
    num_chars: int


def count_text(texts: Iterable[str]) -> TextCounts:
    num_lines = num_words = num_chars = 0
    for text in texts:
        text = text or ""
        num_lines += 1
        num_words += len(text.split())
        num_chars += len(text)
    return TextCounts(num_lines=num_lines, num_words=num_words, num_chars=num_chars)


# ---------------------------------------------------------------------------------------------------------------------
# Scoring a token stream
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One forward pass of the sliding window: inputs[begin:end], scoring the targets of its last `num_scored`."""

    begin: int
    end: int
    num_scored: int


def sliding_windows(num_targets: int, window: int, stride: int) -> list[Window]:
    """Windows over `num_targets` positions that score every position exactly once.

    The first window scores all its positions; each next window ends `stride` positions further (the last one at
    `num_targets`) and is `window` long, so a scored position sees at least `window - stride + 1` inputs.
    """
    if window < 1 or not 1 <= stride <= window:
        raise RecipeError(f"need 1 <= stride <= window, got stride={stride}, window={window}.")
    end = min(window, num_targets)
    windows = [Window(begin=0, end=end, num_scored=end)]
    while end < num_targets:
        next_end = min(end + stride, num_targets)
        windows.append(Window(begin=max(0, next_end - window), end=next_end, num_scored=next_end - end))
        end = next_end
    return windows


def _token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position NLL in nats, in float32 whatever the model's dtype."""
    return F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), reduction="none").view(
        targets.shape
    )


def _progress(total: int, show: bool, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not show, desc=description, unit="tok")


@torch.no_grad()
def sliding_window_nll(
    model: PreTrainedModel,
    token_ids: list[int],
    context_token_id: int,
    *,
    window: int,
    stride: int,
    tokens_per_forward: int = DEFAULT_TOKENS_PER_FORWARD,
    show_progress: bool = False,
) -> torch.Tensor:
    """NLL (nats, float64) of each of `token_ids`, `context_token_id` prepended, with a sliding window."""
    stream = torch.tensor([context_token_id, *token_ids], dtype=torch.long, device=model.device)
    inputs, targets = stream[:-1], stream[1:]  # targets[i] is predicted from inputs[: i + 1]
    nll = torch.full((len(token_ids),), float("nan"), dtype=torch.float64, device=model.device)
    windows = sliding_windows(len(token_ids), window, stride)

    # Windows of one length and one number of scored positions (all but the first and last) go in one batch.
    windows_per_batch = max(1, tokens_per_forward // window)
    batches: list[list[Window]] = []
    for item in windows:
        last = batches[-1][-1] if batches else None
        same_shape = last is not None and (last.end - last.begin, last.num_scored) == (
            item.end - item.begin,
            item.num_scored,
        )
        if same_shape and len(batches[-1]) < windows_per_batch:
            batches[-1].append(item)
        else:
            batches.append([item])

    with _progress(len(token_ids), show_progress, "scoring (sliding window)") as progress:
        for batch in batches:
            num_scored = batch[0].num_scored
            input_ids = torch.stack([inputs[w.begin : w.end] for w in batch])
            batch_targets = torch.stack([targets[w.end - num_scored : w.end] for w in batch])
            logits = model(input_ids=input_ids, use_cache=False, logits_to_keep=num_scored).logits
            batch_nll = _token_nll(logits, batch_targets).double()
            for w, row in zip(batch, batch_nll, strict=True):
                nll[w.end - num_scored : w.end] = row
            progress.update(num_scored * len(batch))
    return nll


@torch.no_grad()
def recurrent_nll(
    model: PreTrainedModel,
    token_ids: list[int],
    context_token_id: int,
    *,
    tokens_per_forward: int = DEFAULT_TOKENS_PER_FORWARD,
    show_progress: bool = False,
) -> torch.Tensor:
    """NLL (nats, float64) of each of `token_ids`, `context_token_id` prepended, carrying the recurrent state.

    The state (`cache`, e.g. an `LSTMLMCache`) goes from each chunk to the next, so the result equals one
    forward over the whole stream.
    """
    stream = torch.tensor([context_token_id, *token_ids], dtype=torch.long, device=model.device)
    inputs, targets = stream[:-1], stream[1:]
    nll = torch.empty(len(token_ids), dtype=torch.float64, device=model.device)
    state = None
    with _progress(len(token_ids), show_progress, "scoring (recurrent state)") as progress:
        for start in range(0, len(token_ids), tokens_per_forward):
            chunk = slice(start, start + tokens_per_forward)
            outputs = model(input_ids=inputs[None, chunk], cache=state, use_cache=True)
            state = outputs.cache
            nll[chunk] = _token_nll(outputs.logits[0], targets[chunk]).double()
            progress.update(len(targets[chunk]))
    return nll


def check_causal_lm(model: PreTrainedModel) -> None:
    if is_masked_lm(model.config):
        raise RecipeError(
            f"{model.config.model_type} is a masked language model: it gives no next-token probabilities, so it has "
            "no perplexity or bits per character. Evaluate a causal model (lstm_lm, mini_gpt)."
        )


def context_window(model: PreTrainedModel) -> int | None:
    """The sliding window for a model with a position limit; None for a recurrent model, which needs none."""
    if getattr(model, "_is_stateful", False):
        return None
    window = max_positions(model.config)
    if window is None:
        raise RecipeError(
            f"{type(model).__name__} is neither recurrent (_is_stateful) nor has max_position_embeddings: "
            "cannot tell how to score a long text with it."
        )
    return window


def score_token_stream(
    model: PreTrainedModel,
    token_ids: list[int],
    context_token_id: int,
    *,
    stride: int | None = None,
    tokens_per_forward: int = DEFAULT_TOKENS_PER_FORWARD,
    show_progress: bool = False,
) -> tuple[torch.Tensor, dict[str, int | str]]:
    """Per-token NLL of the whole stream, and how it was scored (`{"scoring": ..., "window": ..., "stride": ...}`)."""
    check_causal_lm(model)
    if not token_ids:
        raise RecipeError("Nothing to score: the text has no tokens.")
    was_training = model.training
    model.eval()  # no dropout
    try:
        window = context_window(model)
        if window is None:
            nll = recurrent_nll(
                model,
                token_ids,
                context_token_id,
                tokens_per_forward=tokens_per_forward,
                show_progress=show_progress,
            )
            return nll, {"scoring": "recurrent_state"}
        stride = stride if stride is not None else max(1, window // 2)
        nll = sliding_window_nll(
            model,
            token_ids,
            context_token_id,
            window=window,
            stride=stride,
            tokens_per_forward=tokens_per_forward,
            show_progress=show_progress,
        )
        return nll, {"scoring": "sliding_window", "window": window, "stride": stride}
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------------------------------------
# Text -> scores in published units
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class LMScores:
    """Scores of a causal LM on a whole text. `nll` is the total NLL in nats over `num_tokens` tokens."""

    unit: Unit
    nll: float
    num_tokens: int
    num_words: int
    num_lines: int
    num_chars: int
    token_ppl: float
    word_ppl: float | None
    bpc: float | None
    scoring: dict[str, int | str]
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def _exp(value: float) -> float:
    return math.exp(value) if value < 700 else float("inf")


def score_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    unit: Unit = "token",
    *,
    stride: int | None = None,
    tokens_per_forward: int = DEFAULT_TOKENS_PER_FORWARD,
    show_progress: bool = False,
) -> LMScores:
    """Score the rows of a split as one stream (docs/scoring.md) and normalise in `unit`.

    `word_ppl` is set for unit "word", `bpc` for unit "char"; `token_ppl` always.
    """
    if unit not in ("word", "char", "token"):
        raise RecipeError(f"unit must be 'word', 'char' or 'token', got {unit!r}.")
    check_causal_lm(model)
    context_token_id = (
        tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    )
    if context_token_id is None:
        raise RecipeError(
            "The tokenizer has no bos or eos token to give the first token a context; scoring needs one."
        )
    started = time.perf_counter()
    counts = count_text(texts)
    token_ids = tokenize_as_stream(texts, tokenizer)
    nll, scoring = score_token_stream(
        model,
        token_ids,
        context_token_id,
        stride=stride,
        tokens_per_forward=tokens_per_forward,
        show_progress=show_progress,
    )
    total_nll = nll.sum().item()
    if not math.isfinite(total_nll):
        raise RecipeError(f"The total NLL is {total_nll}: the model gives some token zero probability.")
    word_ppl = bpc = None
    if unit == "word":
        word_ppl = _exp(total_nll / (counts.num_words + counts.num_lines))
    elif unit == "char":
        if counts.num_chars == 0:
            raise RecipeError("The text has no characters: bits per character are undefined.")
        bpc = total_nll / math.log(2) / counts.num_chars
    return LMScores(
        unit=unit,
        nll=total_nll,
        num_tokens=len(token_ids),
        num_words=counts.num_words,
        num_lines=counts.num_lines,
        num_chars=counts.num_chars,
        token_ppl=_exp(total_nll / len(token_ids)),
        word_ppl=word_ppl,
        bpc=bpc,
        scoring=scoring,
        seconds=time.perf_counter() - started,
    )


def load_split_texts(
    dataset_name: str, dataset_config_name: str | None, split: str, text_column: str
) -> list[str]:
    """Every row of one split's text column, read from the data mirror when it holds the dataset."""
    dataset = data.load_hub_dataset(dataset_name, dataset_config_name, split)
    description = f"dataset {dataset_name!r}, split {split!r}"
    data._check_text_column(dataset, text_column, description)
    return [text or "" for text in dataset[text_column]]


def published_metrics(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data_args: data.DataArguments,
    split: str | None = None,
    *,
    metric_key_prefix: str = "eval",
    stride: int | None = None,
    show_progress: bool = True,
) -> dict[str, float]:
    """The published-unit scores of `model` on a whole split of a known benchmark; {} for any other data.

    For the pretraining script, after training: WikiText / PTB give `<prefix>_word_perplexity`, Tiny Shakespeare
    `<prefix>_bits_per_character`, both with `<prefix>_stream_token_perplexity` (per token, whole split scored as
    one stream: unlike `eval_perplexity`, every token has context and none is dropped). Masked models and local
    files give {}. `split` defaults to `data_args.eval_split`; `max_eval_samples` is ignored (the whole split is the
    benchmark).
    """
    benchmark = published_benchmark(data_args.dataset_name, data_args.dataset_config_name)
    if benchmark is None or is_masked_lm(model.config):
        return {}
    texts = load_split_texts(
        data_args.dataset_name,
        data_args.dataset_config_name,
        split or data_args.eval_split,
        data_args.text_column,
    )
    scores = score_texts(model, tokenizer, texts, benchmark.unit, stride=stride, show_progress=show_progress)
    metrics = {f"{metric_key_prefix}_stream_token_perplexity": scores.token_ppl}
    if scores.word_ppl is not None:
        metrics[f"{metric_key_prefix}_word_perplexity"] = scores.word_ppl
    if scores.bpc is not None:
        metrics[f"{metric_key_prefix}_bits_per_character"] = scores.bpc
    return metrics


def results_file_name(dataset_name: str, dataset_config_name: str | None, split: str) -> str:
    """`lm_eval_<dataset>_<split>.json`, e.g. lm_eval_wikitext_wikitext-2-v1_test.json."""
    parts = [dataset_name.rstrip("/").rsplit("/", 1)[-1], dataset_config_name, split]
    safe = "_".join(re.sub(r"[^A-Za-z0-9._-]+", "-", part) for part in parts if part)
    return f"lm_eval_{safe}.json"


# ---------------------------------------------------------------------------------------------------------------------
# Command line (scripts/evaluate_lm.py)
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class EvaluationArguments:
    """Which checkpoint to score on which split (scripts/evaluate_lm.py; the first word may be the model path)."""

    model_path: str = field(
        metadata={"help": "Output folder or checkpoint of a causal model (lstm_lm, mini_gpt)."}
    )
    dataset_name: str = field(
        metadata={
            "help": "Hub dataset id, e.g. Salesforce/wikitext (read from $LMRECIPES_DATA_MIRROR when mirrored), or "
            "a local dataset folder."
        }
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Dataset configuration, e.g. wikitext-2-v1."}
    )
    split: str = field(
        default="test", metadata={"help": "Split to score, whole (published numbers are on test)."}
    )
    text_column: str | None = field(
        default=None, metadata={"help": "Column holding the text (default: the benchmark's, else 'text')."}
    )
    unit: str = field(
        default="auto",
        metadata={
            "help": "Normalisation: word (perplexity per word + end of line), char (bits per character), token; "
            "auto: the benchmark's published unit (token for unknown data).",
            "choices": ["auto", "word", "char", "token"],
        },
    )
    stride: int | None = field(
        default=None,
        metadata={"help": "Sliding-window stride for position-limited models (default: window // 2)."},
    )
    tokens_per_forward: int = field(
        default=DEFAULT_TOKENS_PER_FORWARD,
        metadata={
            "help": "Tokens per forward pass: a recurrent chunk, or that many tokens' worth of windows."
        },
    )
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)."}
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Where to write lm_eval_<dataset>_<split>.json (default: model_path)."},
    )
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self) -> None:
        for name in ("stride", "tokens_per_forward"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise RecipeError(f"{name} must be >= 1, got {value}.")


def parse_evaluation_args(argv: list[str]) -> EvaluationArguments:
    """HfArgumentParser over `EvaluationArguments`; a first word without "--" is the model path."""
    from lmrecipes.recipe import parse_args_with_path

    return parse_args_with_path(EvaluationArguments, "model_path", argv)


def evaluate_checkpoint(args: EvaluationArguments) -> tuple[dict, Path]:
    """Load the checkpoint, score the whole split, write `<output_dir>/lm_eval_<dataset>_<split>.json`.

    Returns the results (the JSON's content) and the file written.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    import lmrecipes  # noqa: F401  (registers the model families with the Auto classes)

    config = load_pretrained(AutoConfig, args.model_path, "model_path")
    if is_masked_lm(config):
        raise RecipeError(
            f"{args.model_path} holds a {config.model_type} model, a masked LM: it has no perplexity or bits per "
            "character. Evaluate a causal model (lstm_lm, mini_gpt)."
        )
    benchmark = published_benchmark(args.dataset_name, args.dataset_config_name)
    unit = args.unit if args.unit != "auto" else (benchmark.unit if benchmark else "token")
    text_column = args.text_column or (benchmark.text_column if benchmark else "text")
    texts = load_split_texts(args.dataset_name, args.dataset_config_name, args.split, text_column)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_pretrained(AutoTokenizer, args.model_path, "model_path")
    # float32 whatever the checkpoint was saved in: the scores should not depend on half-precision rounding.
    model = load_pretrained(AutoModelForCausalLM, args.model_path, "model_path", dtype=torch.float32).to(
        device
    )
    data.check_tokenizer_fits_model(tokenizer, model.config)
    scores = score_texts(
        model,
        tokenizer,
        texts,
        unit,
        stride=args.stride,
        tokens_per_forward=args.tokens_per_forward,
        show_progress=args.show_progress,
    )
    results = {
        "model_path": str(args.model_path),
        "dataset_name": args.dataset_name,
        "dataset_config_name": args.dataset_config_name,
        "split": args.split,
        "text_column": text_column,
        "device": device,
        **scores.to_dict(),
    }
    output_dir = Path(args.output_dir or args.model_path)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / results_file_name(args.dataset_name, args.dataset_config_name, args.split)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return results, path
