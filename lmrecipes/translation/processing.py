"""Translation data: the recipe's arguments, the source/target pairs of a split, their tokenization (target + eos as
labels) and the pairs dropped as unusable, counted by reason."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from transformers import (
    PreTrainedTokenizerBase,
)

from lmrecipes import data
from lmrecipes.errors import MissingFileError, RecipeError
from lmrecipes.finetuning import EarlyStoppingArguments, FinetuneDataArguments

logger = logging.getLogger(__name__)


@dataclass
class TranslationModelArguments(EarlyStoppingArguments):
    """Which encoder and decoder: two pretrained output folders, or new ones sized here (from_scratch)."""

    encoder_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Pretrained mini_bert output folder: the encoder and the source tokenizer."},
    )
    decoder_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Pretrained mini_gpt output folder: the decoder (cross-attention is added) and the target "
            "tokenizer."
        },
    )
    from_scratch: bool = field(
        default=False,
        metadata={
            "help": "Random weights. With encoder/decoder_name_or_path: their architecture and tokenizers (the "
            "baseline of the warm start); without: models sized by the encoder_*/decoder_* fields, with tokenizers "
            "trained on the training pairs."
        },
    )
    shared_tokenizer: bool = field(
        default=False,
        metadata={
            "help": "from_scratch without folders: one byte-level BPE tokenizer trained on both languages for both sides, instead "
            "of WordPiece for the source and byte-level BPE for the target."
        },
    )
    tokenizer_vocab_size: int = field(
        default=8000,
        metadata={"help": "from_scratch without folders: vocabulary size of each new tokenizer."},
    )
    encoder_hidden_size: int = field(
        default=256, metadata={"help": "from_scratch without folders: encoder width."}
    )
    encoder_num_hidden_layers: int = field(
        default=3, metadata={"help": "from_scratch without folders: encoder layers."}
    )
    encoder_num_attention_heads: int = field(
        default=4, metadata={"help": "from_scratch without folders: encoder heads."}
    )
    encoder_intermediate_size: int | None = field(
        default=None,
        metadata={"help": "from_scratch without folders: encoder MLP size (4 x hidden when unset)."},
    )
    decoder_hidden_size: int = field(
        default=256, metadata={"help": "from_scratch without folders: decoder width."}
    )
    decoder_num_hidden_layers: int = field(
        default=3, metadata={"help": "from_scratch without folders: decoder layers."}
    )
    decoder_num_attention_heads: int = field(
        default=4, metadata={"help": "from_scratch without folders: decoder heads."}
    )
    decoder_intermediate_size: int | None = field(
        default=None,
        metadata={"help": "from_scratch without folders: decoder MLP size (4 x hidden when unset)."},
    )
    dropout: float | None = field(
        default=None,
        metadata={"help": "from_scratch without folders: every dropout probability of both models."},
    )

    def __post_init__(self) -> None:
        paths = {
            name: getattr(self, name)
            for name in ("encoder_name_or_path", "decoder_name_or_path")
            if getattr(self, name)
        }
        missing = {"encoder_name_or_path", "decoder_name_or_path"} - paths.keys()
        if missing and (paths or not self.from_scratch):
            raise RecipeError(
                f"{' and '.join(sorted(missing))}: name the pretrained mini_bert (encoder) and mini_gpt "
                "(decoder) output folders, or set from_scratch: true with neither"
            )
        if self.shared_tokenizer and not self.trains_tokenizers:
            raise RecipeError(
                "shared_tokenizer only applies to from_scratch without pretrained folders (otherwise the folders' "
                "tokenizers are used)"
            )

    @property
    def trains_tokenizers(self) -> bool:
        """New models with new tokenizers: from_scratch with no pretrained folders to take them from."""
        return self.from_scratch and not (self.encoder_name_or_path or self.decoder_name_or_path)


@dataclass
class TranslationArguments:
    """Which columns are the two languages, and how long a pair may be."""

    source_lang: str = field(
        default="de", metadata={"help": "Column (or `translation` key) of the source text."}
    )
    target_lang: str = field(
        default="en", metadata={"help": "Column (or `translation` key) of the target text."}
    )
    max_source_length: int = field(
        default=64,
        metadata={"help": "Source tokens per pair, special tokens included; longer pairs are skipped."},
    )
    max_target_length: int = field(
        default=64, metadata={"help": "Target tokens per pair, eos included; longer pairs are skipped."}
    )
    test_split: str = field(
        default="test", metadata={"help": "Split scored at the end when do_predict is true."}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "Local test file (same format as train_file) instead of test_split."}
    )
    max_test_samples: int | None = field(
        default=None,
        metadata={
            "help": "Score N randomly chosen test pairs (seeded by `seed`; unusable ones are then skipped)."
        },
    )

    def __post_init__(self) -> None:
        if self.source_lang == self.target_lang:
            raise RecipeError(f"source_lang and target_lang are both {self.source_lang!r}")
        for name in ("max_source_length", "max_target_length"):
            if getattr(self, name) < 2:
                raise RecipeError(f"{name} must be >= 2, got {getattr(self, name)}")
        if self.test_file is not None and not os.path.isfile(self.test_file):
            raise MissingFileError(f"test_file={self.test_file!r} does not exist or is not a file.")


# --------------------------------------------------------------------------------------------- data


def load_pairs(data_args: FinetuneDataArguments, task_args: TranslationArguments, split: str) -> Dataset:
    """One split as two columns named by language: from per-language columns (bentrevett/multi30k: en, de) or from
    a `translation` column of {language: text} dicts (wmt, iwslt)."""
    if split == task_args.test_split and task_args.test_file is not None:
        dataset = data.load_data_file(task_args.test_file, split, data_args.FILE_BUILDERS, name="test_file")
    else:
        dataset = data_args.load_split(split)
    languages = [task_args.source_lang, task_args.target_lang]
    columns = dataset.column_names
    if not set(languages) <= set(columns) and "translation" in columns:
        keys = sorted((dataset[0]["translation"] or {}).keys()) if len(dataset) else []
        missing = [lang for lang in languages if lang not in keys]
        if missing:
            raise RecipeError(
                f"split {split!r} has no text for {missing} (source_lang/target_lang): its `translation` column "
                f"holds {keys}"
            )
        dataset = dataset.map(
            lambda row: {lang: (row["translation"] or {}).get(lang) for lang in languages},
            remove_columns=columns,
            desc="Reading the translation column",
        )
    missing = [lang for lang in languages if lang not in dataset.column_names]
    if missing:
        raise RecipeError(
            f"split {split!r} has no text for {missing} (source_lang/target_lang): its columns are {columns}; "
            "expected one column per language or a `translation` column of {language: text}"
        )
    return dataset.select_columns(languages)


def target_label_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Decoder labels: the target tokens and then eos, which teaches the decoder where to stop.

    No other special token: the decoder start token goes in front of the decoder inputs (the labels shifted right,
    by the model or the collator), not into the labels.
    """
    if tokenizer.eos_token_id is None:
        raise RecipeError("the target tokenizer has no eos token: the decoder could not learn where to stop")
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [ids + [tokenizer.eos_token_id] for ids in encoded]


def tokenize_pairs(
    dataset: Dataset,
    source_tokenizer: PreTrainedTokenizerBase,
    target_tokenizer: PreTrainedTokenizerBase,
    task_args: TranslationArguments,
    *,
    num_proc: int | None = None,
    load_from_cache_file: bool = True,
) -> Dataset:
    """Add input_ids, attention_mask (source) and labels (target + eos); the text columns stay for the checks."""

    def as_text(values: list[Any]) -> list[str]:
        return [value if isinstance(value, str) else "" for value in values]  # bad rows are dropped next

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        # Only ids and mask: the encoder would read all-zero token_type_ids anyway, and generate() would hand them on.
        encoded = source_tokenizer(as_text(batch[task_args.source_lang]), return_token_type_ids=False)
        encoded["labels"] = target_label_ids(target_tokenizer, as_text(batch[task_args.target_lang]))
        return encoded

    return dataset.map(
        tokenize,
        batched=True,
        num_proc=num_proc,
        load_from_cache_file=load_from_cache_file,
        desc="Tokenizing",
    )


def bad_pair_checks(task_args: TranslationArguments) -> dict[str, Callable[[dict], bool]]:
    """data.drop_bad_examples checks for a tokenized pair: each is True for a row to drop."""

    def empty(text: Any) -> bool:
        return not isinstance(text, str) or not text.strip()

    return {
        "empty source": lambda row: empty(row[task_args.source_lang]),
        "empty target": lambda row: empty(row[task_args.target_lang]),
        f"source over {task_args.max_source_length} tokens": (
            lambda row: len(row["input_ids"]) > task_args.max_source_length
        ),
        f"target over {task_args.max_target_length} tokens": (
            lambda row: len(row["labels"]) > task_args.max_target_length
        ),
    }


def prepare_split(
    raw: Dataset,
    source_tokenizer: PreTrainedTokenizerBase,
    target_tokenizer: PreTrainedTokenizerBase,
    task_args: TranslationArguments,
    data_args: FinetuneDataArguments,
    description: str,
) -> tuple[Dataset, list[str], list[str]]:
    """Model inputs of the usable pairs, with their source texts and raw reference strings, in the same order."""
    tokenized = tokenize_pairs(
        raw,
        source_tokenizer,
        target_tokenizer,
        task_args,
        num_proc=data_args.preprocessing_num_workers,
        load_from_cache_file=not data_args.overwrite_cache,
    )
    usable = data.drop_bad_examples(tokenized, bad_pair_checks(task_args), description)
    inputs = usable.select_columns(["input_ids", "attention_mask", "labels"])
    return inputs, list(usable[task_args.source_lang]), list(usable[task_args.target_lang])
