"""Text datasets for language modelling: load (Hub or offline mirror or local files), tokenize, pack, collate.

The pipeline, used by the pretraining script and by tokenizer training:

    args = DataArguments(dataset_name="Salesforce/wikitext", dataset_config_name="wikitext-2-v1", block_size=128)
    raw = load_text_dataset(args, args.train_split)              # datasets.Dataset or IterableDataset
    blocks = build_lm_dataset(raw, tokenizer, args.block_size)   # fixed-length blocks of token ids
    collator = lm_data_collator(tokenizer, "causal")              # or "masked" for mini_bert

`prepare_lm_dataset` does the first two steps from `DataArguments` (sample limits, streaming shuffle included).
Map-style and streaming go through the very same `datasets` `.map` calls, so both give the same blocks in the same
order; map-style results are cached on disk, streaming ones are computed lazily while training.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, ClassVar, Literal

import datasets
import pyarrow
import pyarrow.compute as pc
from datasets import Dataset, IterableDataset
from datasets.exceptions import DatasetGenerationError
from transformers import DataCollatorForLanguageModeling, PretrainedConfig, PreTrainedTokenizerBase

from lmrecipes.errors import MissingFileError, RecipeError

logger = logging.getLogger(__name__)

DATA_MIRROR_ENV = "LMRECIPES_DATA_MIRROR"

# Local file extension -> `datasets` packaged builder.
FILE_BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}


def check_data_source(args: Any, file_builders: Mapping[str, str]) -> None:
    """The checks every data-argument class runs before any work: a Hub dataset or local files (not both), files
    that exist in one format `file_builders` can read, and an evaluation split other than the training one.

    `args` has dataset_name, dataset_config_name, train_file, validation_file, train_split and eval_split.
    """
    files = {"train_file": args.train_file, "validation_file": args.validation_file}
    given_files = {name: path for name, path in files.items() if path is not None}
    if args.dataset_name is None and not given_files:
        raise RecipeError(
            "No data given: set dataset_name (Hub id) or train_file/validation_file (local files)."
        )
    if args.dataset_name is not None and given_files:
        raise RecipeError(
            f"Give either dataset_name ({args.dataset_name!r}) or local files ({', '.join(given_files)}), not both."
        )
    if given_files and args.dataset_config_name is not None:
        raise RecipeError("dataset_config_name only applies to dataset_name, not to local files.")
    builders = set()
    for name, path in given_files.items():
        extension = os.path.splitext(path)[1].lower()
        if extension not in file_builders:
            raise RecipeError(
                f"{name}={path!r}: unsupported extension {extension!r}; use one of {sorted(file_builders)}."
            )
        if not os.path.isfile(path):
            raise MissingFileError(f"{name}={path!r} does not exist or is not a file.")
        builders.add(file_builders[extension])
    if len(builders) > 1:
        raise RecipeError(
            f"train_file and validation_file must have the same format, got {sorted(builders)}."
        )
    if args.train_split == args.eval_split:
        raise RecipeError(
            f"train_split and eval_split are both {args.train_split!r}; evaluate on another split."
        )


# Rows tokenized and packed together by one `.map` call. Leftover tokens at the end of each such batch (fewer than a
# block) are dropped, as in transformers' run_clm.py; with ~1000 rows per batch that is well under 1% of the text.
PACKING_BATCH_SIZE = 1000

# How many rows of a stream are looked at to tell an empty (or wrongly chosen) text column before training.
STREAM_PEEK_ROWS = 1000


def resolve_dataset(name: str) -> str:
    """Return `<mirror>/<name>` when $LMRECIPES_DATA_MIRROR is a directory that holds `name`, else `name` (Hub).

    The mirror holds Hub dataset repos under their ids (see the mirror's README), so `load_dataset` on the
    returned path behaves like `load_dataset(name)` online. Absolute paths are returned unchanged.
    """
    mirror = os.environ.get(DATA_MIRROR_ENV)
    if mirror and not os.path.isabs(name) and os.path.isdir(mirror):
        mirrored = os.path.join(mirror, name)
        if os.path.isdir(mirrored):
            logger.info("Dataset %s: using the offline mirror copy at %s", name, mirrored)
            return mirrored
    logger.info("Dataset %s: not in a data mirror (%s=%r), loading it by name", name, DATA_MIRROR_ENV, mirror)
    return name


@dataclass
class DatasetArguments:
    """Where a recipe's data comes from: a Hub dataset (read through the data mirror) or local files.

    The base of every task's data arguments; a task adds its own fields and the file formats it reads.
    """

    FILE_BUILDERS: ClassVar[Mapping[str, str]] = FILE_BUILDERS

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset id, e.g. Salesforce/wikitext. Read from $LMRECIPES_DATA_MIRROR/<id> when that "
            "folder exists (offline mirror), else from the Hub."
        },
    )
    dataset_config_name: str | None = field(
        default=None,
        metadata={"help": "Dataset configuration, e.g. wikitext-2-v1 (needed when there are several)."},
    )
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Local training file instead of dataset_name: .json/.jsonl, .csv or .parquet (and .txt for "
            "language modelling)."
        },
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Local evaluation file, same format as train_file."}
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str = field(
        default="validation",
        metadata={
            "help": "Split to evaluate on (a task needs labels there: SST-2's test labels are all -1)."
        },
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Train on at most N examples (quick runs): N rows chosen at random (seeded by `seed`) for a "
            "task, the first N packed blocks for language modelling (a stream has no random access)."
        },
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on at most N examples, chosen as for max_train_samples."}
    )
    validation_split_percentage: int = field(
        default=5,
        metadata={
            "help": "With a train_file and no validation_file: this percentage of the train file's rows, taken "
            "from its start, is the evaluation split and the rest the training split (as run_clm.py does)."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={"help": "Processes for tokenizing a map-style dataset (ignored when streaming)."},
    )
    overwrite_cache: bool = field(
        default=False, metadata={"help": "Re-tokenize instead of reusing the cached map-style result."}
    )

    def __post_init__(self) -> None:
        check_data_source(self, self.FILE_BUILDERS)
        for name in ("max_train_samples", "max_eval_samples", "preprocessing_num_workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise RecipeError(f"{name} must be >= 1 when given, got {value}.")
        if not 0 < self.validation_split_percentage < 100:
            raise RecipeError(
                f"validation_split_percentage must be between 1 and 99, got {self.validation_split_percentage}."
            )

    @property
    def carves_validation(self) -> bool:
        """A local train file alone: the evaluation split is cut from it."""
        return self.dataset_name is None and self.validation_file is None

    def describe(self) -> str:
        if self.dataset_name is None:
            return "local files " + ", ".join(p for p in (self.train_file, self.validation_file) if p)
        config = f" (config {self.dataset_config_name!r})" if self.dataset_config_name else ""
        return f"dataset {self.dataset_name!r}{config}"

    def load_split(self, split: str, *, streaming: bool = False) -> Dataset | IterableDataset:
        """One split: the Hub dataset (through the mirror), or the local file given for that split."""
        if self.dataset_name is not None:
            return load_hub_dataset(self.dataset_name, self.dataset_config_name, split, streaming=streaming)
        if self.carves_validation and split in (self.train_split, self.eval_split):
            return self._carve(split, streaming)
        files = {self.train_split: self.train_file, self.eval_split: self.validation_file}
        files = {name: path for name, path in files.items() if path is not None}
        if split not in files:
            flag = {self.train_split: "train_file", self.eval_split: "validation_file"}.get(split)
            hint = f"set {flag}" if flag else f"local files only give the splits {sorted(files)}"
            raise RecipeError(f"No local file for split {split!r}: {hint}.")
        name = {self.train_split: "train_file", self.eval_split: "validation_file"}[split]
        return load_data_file(files[split], split, self.FILE_BUILDERS, streaming=streaming, name=name)

    def _carve(self, split: str, streaming: bool) -> Dataset | IterableDataset:
        if streaming and split == self.train_split:
            return load_data_file(
                self.train_file, split, self.FILE_BUILDERS, streaming=True, name="train_file"
            )
        if streaming:
            raise RecipeError(
                "streaming reads train_file as it comes, so no validation split can be cut from it: set "
                "validation_file"
            )
        percent = self.validation_split_percentage
        rows = load_data_file(self.train_file, "train", self.FILE_BUILDERS, name="train_file")
        cut = round(len(rows) * percent / 100)
        if split == self.train_split:
            return rows.select(range(cut, len(rows))) if cut < len(rows) else rows
        if not 0 < cut < len(rows):
            raise RecipeError(
                f"train_file={self.train_file!r} has {len(rows)} rows: validation_split_percentage={percent} leaves "
                "no row for one of the splits; set validation_file"
            )
        logger.info(
            "no validation_file: the first %d%% of %s (%d rows) is the evaluation split",
            percent,
            self.train_file,
            cut,
        )
        return rows.select(range(cut))


def load_data_file(
    path: str,
    split: str,
    file_builders: Mapping[str, str],
    *,
    streaming: bool = False,
    name: str = "file",
) -> Dataset | IterableDataset:
    """A local file as one split, read by the `datasets` builder its extension names.

    `name` is the recipe field that gave the file (train_file, ...): an empty, row-less or unreadable file fails in
    one line naming it, where `datasets` would say "An error occurred while generating the dataset" without a name.
    """
    builder = file_builders[os.path.splitext(path)[1].lower()]
    where = f"{name}={path!r}"
    if os.path.getsize(path) == 0:
        raise RecipeError(f"{where} is empty (0 bytes): it holds no rows.")
    # Plain text: keep each line's "\n" so documents read on across lines (see build_lm_dataset on separators).
    builder_kwargs = {"keep_linebreaks": True} if builder == "text" else {}
    try:
        return datasets.load_dataset(
            builder, data_files={split: path}, split=split, streaming=streaming, **builder_kwargs
        )
    except (DatasetGenerationError, ValueError) as error:  # pandas, pyarrow and json errors are ValueErrors
        reason = _root_cause(error)
        if "corresponds to no data" in reason:  # datasets' words for a split of 0 rows
            problem = {"csv": "has a header but no rows", "json": "holds no records"}.get(
                builder, "holds no rows"
            )
            raise RecipeError(f"{where} {problem}.") from error
        raise RecipeError(f"{where} cannot be read as {builder}: {reason}") from error


def _root_cause(error: BaseException) -> str:
    """The innermost error's message, on one line: DatasetGenerationError hides the reason in its cause."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


@dataclass
class DataArguments(DatasetArguments):
    """Which text to pretrain on and how to cut it into blocks (command line flags via HfArgumentParser)."""

    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the dataset (IterableDataset: tokenized lazily, no full pass before the first step; "
            "the trainer then needs max_steps) instead of tokenizing it up front into a cached map-style dataset."
        },
    )
    shuffle_buffer_size: int = field(
        default=10_000,
        metadata={"help": "Streaming only: size of the buffer the training blocks are shuffled in."},
    )
    block_size: int = field(
        default=128,
        metadata={
            "help": "Tokens per training block (sequence length); at most the model's maximum positions."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block_size < 2:
            raise RecipeError(f"block_size must be >= 2, got {self.block_size}.")
        if self.shuffle_buffer_size < 1:
            raise RecipeError(f"shuffle_buffer_size must be >= 1, got {self.shuffle_buffer_size}.")
        if self.streaming and self.preprocessing_num_workers is not None:
            logger.warning(
                "preprocessing_num_workers is ignored when streaming (tokenization happens on the fly)."
            )


def load_hub_dataset(
    dataset_name: str, dataset_config_name: str | None, split: str, *, streaming: bool = False
) -> Dataset | IterableDataset:
    """One split of a Hub dataset, read from $LMRECIPES_DATA_MIRROR when the mirror holds it.

    Any task's loader (language modelling, classification, QA, translation) goes through here, so a missing
    dataset, an unknown config or an unknown split fails with the same clear error naming what exists.
    """
    path = resolve_dataset(dataset_name)
    config = dataset_config_name
    description = f"dataset {dataset_name!r}" + (f" (config {config!r})" if config else "")
    try:
        return datasets.load_dataset(path, config, split=split, streaming=streaming)
    except (FileNotFoundError, ConnectionError) as error:  # includes datasets' DatasetNotFoundError
        mirror = os.environ.get(DATA_MIRROR_ENV)
        where = (
            f"not in the data mirror {mirror!r} (${DATA_MIRROR_ENV}) and not loadable from the Hub"
            if mirror
            else f"not loadable from the Hub (set ${DATA_MIRROR_ENV} to use an offline mirror)"
        )
        raise MissingFileError(f"Dataset {dataset_name!r} not found: {where}. ({error})") from error
    except ValueError as error:
        # datasets says "BuilderConfig not found" or "Unknown split"; name the flag and list what exists.
        configs = _safe_call(datasets.get_dataset_config_names, path)
        if configs and config is not None and config not in configs:
            raise RecipeError(
                f"Unknown dataset_config_name {config!r} for dataset {dataset_name!r}; "
                f"available configs: {configs}."
            ) from error
        if configs and config is None and len(configs) > 1:
            raise RecipeError(
                f"Dataset {dataset_name!r} has several configs, set dataset_config_name to one of {configs}."
            ) from error
        splits = _safe_call(datasets.get_dataset_split_names, path, config)
        if splits and split not in splits:
            raise RecipeError(f"{description} has no split {split!r}; available splits: {splits}.") from error
        raise


def _safe_call(function, *args) -> list[str]:
    try:
        return list(function(*args))
    except Exception:  # only used to enrich an error message
        return []


def _column_names(dataset: Dataset | IterableDataset) -> list[str]:
    if dataset.column_names is not None:
        return list(dataset.column_names)
    first_row = next(iter(dataset), None)  # streams of unknown features: look at one row
    return [] if first_row is None else list(first_row)


def _check_text_column(dataset: Dataset | IterableDataset, text_column: str, description: str) -> None:
    columns = _column_names(dataset)
    if text_column not in columns:
        raise RecipeError(
            f"{description} has no column {text_column!r} (text_column); its columns are {columns}."
        )
    if dataset.features is not None:
        feature = dataset.features.get(text_column)
        if feature is not None and getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise RecipeError(f"{description}: column {text_column!r} holds {feature}, not text (strings).")
        return
    first_value = next(iter(dataset), {}).get(text_column)  # a stream of unknown features: look at one row
    if first_value is not None and not isinstance(first_value, str):
        arrow_type = pyarrow.array([first_value]).type  # the type datasets would infer, e.g. int64
        raise RecipeError(f"{description}: column {text_column!r} holds {arrow_type}, not text (strings).")


def _check_has_text(dataset: Dataset | IterableDataset, text_column: str, description: str) -> None:
    """Fail before training when the text column is empty everywhere (map-style) or in the first rows (stream)."""
    if isinstance(dataset, Dataset):
        lengths = pc.utf8_length(dataset.data.column(text_column))  # vectorised over the Arrow column
        longest = pc.max(lengths).as_py() if len(dataset) else None
        if not longest:
            raise RecipeError(
                f"{description} has no text: all {len(dataset)} rows of {text_column!r} are empty."
            )
        return
    rows_seen = 0
    for row in dataset.select_columns([text_column]).take(STREAM_PEEK_ROWS):
        rows_seen += 1
        if row[text_column]:
            return
    what = f"all {rows_seen} rows" if rows_seen < STREAM_PEEK_ROWS else f"the first {rows_seen} rows"
    raise RecipeError(f"{description} has no text: {what} of {text_column!r} are empty.")


def load_text_dataset(args: DataArguments, split: str) -> Dataset | IterableDataset:
    """Load one split of the text data (`streaming=True` gives an IterableDataset) and check it can be trained on.

    Raises a clear error, before any training, for a missing dataset or file, an unknown config or split, a missing
    or non-text `text_column`, or a corpus without any non-empty text.
    """
    dataset = args.load_split(split, streaming=args.streaming)
    description = f"{args.describe()}, split {split!r}"
    _check_text_column(dataset, args.text_column, description)
    _check_has_text(dataset, args.text_column, description)
    return dataset


BLOCK_SIZE_HINT = "lower block_size or enlarge the model."


def check_length_fits(
    field: str,
    length: int,
    max_positions: int | None,
    *,
    part: str = "model",
    positions_needed: int | None = None,
    hint: str = "",
) -> None:
    """Raise if a recipe's `field` (a length in tokens) would overrun a position table of `max_positions` entries.

    None means no limit (a recurrent model). `positions_needed` is what `length` costs in positions when that differs
    (generation never feeds back its last token); `hint` says what to change.
    """
    needed = length if positions_needed is None else positions_needed
    if max_positions is None or needed <= max_positions:
        return
    if positions_needed is None:
        problem = f"{field}={length} exceeds the {part}'s max_position_embeddings={max_positions}"
    else:
        problem = (
            f"{field}={length} needs {needed} {part} positions but the {part} has max_position_embeddings="
            f"{max_positions}"
        )
    raise RecipeError(f"{problem}; {hint}" if hint else problem)


def check_tokenizer_fits_model(tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> None:
    """Raise if the tokenizer can produce ids the model's embedding has no row for.

    Also warns when the config's pad/bos/eos ids disagree with the tokenizer's (loss masking and generation would
    use the wrong token). Each side loaded from a folder is named by it (`name_or_path`, set by from_pretrained).
    """
    tokenizer_size = len(tokenizer)  # includes added tokens, unlike tokenizer.vocab_size
    if tokenizer_size > config.vocab_size:
        tokenizer_from = f" of {tokenizer.name_or_path!r}" if tokenizer.name_or_path else ""
        model_from = f" (model of {config.name_or_path!r})" if config.name_or_path else ""
        hint = (
            "use the tokenizer the model was trained with"
            if config.name_or_path
            else f"set vocab_size >= {tokenizer_size} in the model config (or train a smaller tokenizer)"
        )
        raise RecipeError(
            f"The tokenizer{tokenizer_from} has {tokenizer_size} tokens but the model's vocab_size is "
            f"{config.vocab_size}{model_from}: ids {config.vocab_size} to {tokenizer_size - 1} have no embedding "
            f"row; {hint}."
        )
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        config_id, tokenizer_id = getattr(config, name, None), getattr(tokenizer, name, None)
        if config_id is not None and tokenizer_id is not None and config_id != tokenizer_id:
            logger.warning("config.%s=%s but the tokenizer's %s is %s", name, config_id, name, tokenizer_id)


def _document_separator_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id


SeparateRows = Literal["auto", "always", "never"]


def tokenize_rows(
    texts: Sequence[str | None], tokenizer: PreTrainedTokenizerBase, separate_rows: SeparateRows = "auto"
) -> list[list[int]]:
    """Each row's token ids (no special tokens), with the document separator after the rows that end a document.

    The one home of the separator rule (see build_lm_dataset): training packs these ids, evaluation scores them.
    """
    texts = [text or "" for text in texts]
    # verbose=False: rows longer than model_max_length are fine, packing and scoring cut them into windows.
    token_ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    separator_id = _document_separator_id(tokenizer) if separate_rows != "never" else None
    if separator_id is not None:
        for text, ids in zip(texts, token_ids, strict=True):
            if text and (separate_rows == "always" or not text.endswith("\n")):
                ids.append(separator_id)
    return token_ids


def _special_tokens_around_text(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids the tokenizer's post-processor puts before and after a single text (WordPiece: [CLS], [SEP]).

    Fast tokenizers in transformers 5 have no `build_inputs_with_special_tokens`, so read the template off a probe.
    """
    probe = "a"
    with_special = tokenizer(probe, add_special_tokens=True)["input_ids"]
    without_special = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(without_special) + 1):
        if with_special[start : start + len(without_special)] == without_special:
            return with_special[:start], with_special[start + len(without_special) :]
    raise RecipeError("Cannot tell where the tokenizer's special tokens go around a text.")


def build_lm_dataset(
    dataset: Dataset | IterableDataset,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    text_column: str = "text",
    *,
    model_max_positions: int | None = None,
    separate_rows: SeparateRows = "auto",
    batch_size: int = PACKING_BATCH_SIZE,
    num_proc: int | None = None,
    load_from_cache_file: bool = True,
) -> Dataset | IterableDataset:
    """Tokenize a text dataset and pack it into blocks of exactly `block_size` tokens (run_clm.py's group_texts).

    Each block has `input_ids` and `attention_mask` (all ones); the collator makes the labels.

    Packing: the rows of each batch of `batch_size` rows are tokenized without special tokens, concatenated and cut
    into blocks; the tail of each batch shorter than a block is dropped. When the tokenizer wraps a sequence in
    special tokens (WordPiece: `[CLS] ... [SEP]`), each block holds `block_size - 2` text tokens wrapped in the same
    special tokens as the tokenizer's post-processor, so every block is a well-formed BERT input.

    Document separators (`separate_rows`): the tokenizer's eos (byte_bpe: `<|endoftext|>`), or `[SEP]` when it has
    no eos, is appended after a row
      - "auto" (default): when the row does not end with a newline. A row ending in "\\n" is a line of a longer
        document (WikiText: one line a row, every line ends with "\\n", articles start with " = Title = "), whose
        newline token already marks the line end; an eos there would tell the model every paragraph ends the text
        and would break continuity between lines. Rows without a final newline (IMDB reviews, SST-2 sentences,
        PTB sentences) are whole documents, so they get one. Empty rows add nothing.
      - "always" / "never": after every non-empty row / never.

    The same two `.map` calls serve map-style datasets (run eagerly and cached: `num_proc`, `load_from_cache_file`)
    and streaming ones (lazy, nothing computed before the first batch is drawn), so with `num_proc` None both yield
    identical blocks in identical order. With `num_proc` > 1, map-style batches restart at each worker's shard,
    which shifts a few blocks at the shard boundaries.

    In a multi-process run build map-style datasets under `training_args.main_process_first()`, so one process
    writes the cache and the others read it.
    """
    if separate_rows not in ("auto", "always", "never"):
        raise RecipeError(f"separate_rows must be 'auto', 'always' or 'never', got {separate_rows!r}.")
    check_length_fits("block_size", block_size, model_max_positions, hint=BLOCK_SIZE_HINT)
    prefix_ids, suffix_ids = _special_tokens_around_text(tokenizer)
    text_per_block = block_size - len(prefix_ids) - len(suffix_ids)
    if text_per_block < 1:
        raise RecipeError(
            f"block_size={block_size} leaves no room for text: the tokenizer adds "
            f"{len(prefix_ids) + len(suffix_ids)} special tokens around each block."
        )
    _check_text_column(dataset, text_column, "The dataset")
    if separate_rows == "always" and _document_separator_id(tokenizer) is None:
        raise RecipeError("separate_rows='always' needs a tokenizer with an eos or sep token.")

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[list[int]]]:
        return {"input_ids": tokenize_rows(batch[text_column], tokenizer, separate_rows)}

    def group_into_blocks(batch: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        concatenated = list(chain.from_iterable(batch["input_ids"]))
        usable = (len(concatenated) // text_per_block) * text_per_block
        chunks = [
            prefix_ids + concatenated[start : start + text_per_block] + suffix_ids
            for start in range(0, usable, text_per_block)
        ]
        return {"input_ids": chunks, "attention_mask": [[1] * block_size for _ in chunks]}

    remove_columns = _column_names(dataset)
    if isinstance(dataset, Dataset):
        map_kwargs = {"num_proc": num_proc, "load_from_cache_file": load_from_cache_file}
        tokenized = dataset.map(
            tokenize,
            batched=True,
            batch_size=batch_size,
            remove_columns=remove_columns,
            desc="Tokenizing",
            **map_kwargs,
        )
        return tokenized.map(
            group_into_blocks,
            batched=True,
            batch_size=batch_size,
            desc=f"Packing into blocks of {block_size}",
            **map_kwargs,
        )
    tokenized = dataset.map(tokenize, batched=True, batch_size=batch_size, remove_columns=remove_columns)
    return tokenized.map(group_into_blocks, batched=True, batch_size=batch_size)


def prepare_lm_dataset(
    args: DataArguments,
    tokenizer: PreTrainedTokenizerBase,
    split: str,
    *,
    model_max_positions: int | None = None,
    seed: int = 42,
) -> Dataset | IterableDataset:
    """Load `split`, check it, and build its blocks as `DataArguments` says.

    The training split (`args.train_split`) keeps `max_train_samples` blocks, other splits `max_eval_samples`. A
    streaming training split is then shuffled in a buffer of `shuffle_buffer_size` blocks (blocks, not rows, so
    the text inside a block stays contiguous); the Trainer's `set_epoch` reseeds it every epoch. Map-style
    datasets are not shuffled here: the Trainer's sampler does it.
    """
    check_length_fits("block_size", args.block_size, model_max_positions, hint=BLOCK_SIZE_HINT)
    raw = load_text_dataset(args, split)
    blocks = build_lm_dataset(
        raw,
        tokenizer,
        args.block_size,
        args.text_column,
        model_max_positions=model_max_positions,
        num_proc=args.preprocessing_num_workers,
        load_from_cache_file=not args.overwrite_cache,
    )
    is_training = split == args.train_split
    max_samples = args.max_train_samples if is_training else args.max_eval_samples
    if isinstance(blocks, Dataset):
        if len(blocks) == 0:
            raise RecipeError(
                f"{args.describe()}, split {split!r} is shorter than one block of {args.block_size} tokens."
            )
        if max_samples is not None:
            blocks = blocks.select(range(min(max_samples, len(blocks))))
        return blocks
    if max_samples is not None:
        blocks = blocks.take(max_samples)
    if is_training:
        blocks = blocks.shuffle(seed=seed, buffer_size=args.shuffle_buffer_size)
    # Unsplit, also under DDP: accelerate's dispatch_batches hands each process its slice of every global batch, so
    # splitting the stream by node first would lose the other processes' blocks.
    return blocks


def lm_data_collator(
    tokenizer: PreTrainedTokenizerBase,
    objective: Literal["causal", "masked"],
    *,
    mlm_probability: float = 0.15,
    pad_to_multiple_of: int | None = None,
    seed: int | None = None,
) -> DataCollatorForLanguageModeling:
    """transformers' language-modelling collator for a training objective.

    causal: labels = input_ids (the model shifts them), padding -> -100. masked: `mlm_probability` of the
    non-special tokens are chosen; of those 80% become [MASK], 10% a random token, 10% stay; labels are -100
    everywhere else.
    """
    if tokenizer.pad_token is None:
        raise RecipeError(
            "The tokenizer has no pad token; the language-modelling collator needs one to pad batches."
        )
    if objective == "causal":
        return DataCollatorForLanguageModeling(
            tokenizer=tokenizer, mlm=False, pad_to_multiple_of=pad_to_multiple_of, seed=seed
        )
    if objective == "masked":
        if tokenizer.mask_token is None:
            raise RecipeError(
                "Masked language modelling needs a tokenizer with a mask token (wordpiece has [MASK])."
            )
        return DataCollatorForLanguageModeling(
            tokenizer=tokenizer,
            mlm=True,
            mlm_probability=mlm_probability,
            pad_to_multiple_of=pad_to_multiple_of,
            seed=seed,
        )
    raise RecipeError(f"Unknown objective {objective!r}; expected 'causal' or 'masked'.")


def drop_flagged_rows(
    dataset: Dataset,
    reasons: Sequence[str | None],
    description: str,
    *,
    row_ids: Sequence[Any] | None = None,
) -> Dataset:
    """Drop the rows whose reason is not None, log one line counting them by reason, fail if none are left.

    The one row filter of every task: run it before training, so no bad row crashes a run mid-epoch. `row_ids`
    (e.g. SQuAD's `id` column) names the first dropped rows in the log line.
    """
    counts = Counter(reason for reason in reasons if reason)
    skipped = sum(counts.values())
    if skipped:
        summary = ", ".join(f"{count} {reason}" for reason, count in counts.most_common())
        message = f"{description}: skipped {skipped} of {len(dataset)} examples ({summary})"
        if row_ids is not None:
            first = [row_id for row_id, reason in zip(row_ids, reasons, strict=True) if reason][:5]
            message += f"; first dropped ids {first}"
        logger.warning("%s", message)
    else:
        logger.info("%s: all %d examples usable", description, len(dataset))
    if skipped == len(dataset):
        raise RecipeError(f"{description}: no usable example left after skipping {skipped} ({dict(counts)})")
    return dataset.select([i for i, reason in enumerate(reasons) if not reason]) if skipped else dataset


def drop_bad_examples(
    dataset: Dataset, checks: Mapping[str, Callable[[dict[str, Any]], bool]], description: str
) -> Dataset:
    """`drop_flagged_rows` with each row's reason found by `checks`: reason -> predicate True for a BAD row.

    The first reason that applies is the one counted.
    """
    # A plain loop rather than Dataset.filter: filter may run in worker processes (num_proc) or be served from
    # the cache, and the reasons would then be lost.
    reasons = [next((reason for reason, is_bad in checks.items() if is_bad(row)), None) for row in dataset]
    return drop_flagged_rows(dataset, reasons, description)


def take_samples(dataset: Dataset, max_samples: int | None, seed: int) -> Dataset:
    """`max_samples` rows chosen at random (seeded), or all of them.

    At random, not the first ones: some datasets are sorted by label (IMDB: all negative reviews, then all
    positive), so the first rows would hold a single class.
    """
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_samples))


def batch_iterator(
    dataset: Dataset | IterableDataset, text_column: str = "text", batch_size: int = 1000
) -> Iterator[list[str]]:
    """Yield lists of non-empty texts from `dataset`, streaming (for tokenizer training: nothing is held in memory).

    Use `itertools.chain.from_iterable(batch_iterator(...))` to get the texts one by one.
    """
    _check_text_column(dataset, text_column, "The dataset")
    for batch in dataset.select_columns([text_column]).iter(batch_size=batch_size):
        texts = [text for text in batch[text_column] if text]
        if texts:
            yield texts
