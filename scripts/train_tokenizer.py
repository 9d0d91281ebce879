"""Train a tokenizer for one of the lmrecipes model families from a text dataset, streaming.

    LMRECIPES_DATA_MIRROR=../shared/datasets .venv/bin/python scripts/train_tokenizer.py \\
        --dataset_name Salesforce/wikitext --dataset_config_name wikitext-2-v1 \\
        --model_type mini_gpt --vocab_size 8000 --output_dir outputs/tokenizer-wikitext2

The output folder loads with `AutoTokenizer.from_pretrained(output_dir)`. Only the training split is read.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from lmrecipes.data import DataArguments, batch_iterator, load_text_dataset
from lmrecipes.errors import RecipeError, one_line_errors
from lmrecipes.families import FAMILIES
from lmrecipes.tokenization import TOKENIZER_KINDS, train_tokenizer

logger = logging.getLogger("train_tokenizer")


@dataclass
class TokenizerTrainingArguments:
    output_dir: str = field(metadata={"help": "Folder to save the tokenizer to (save_pretrained)."})
    vocab_size: int = field(metadata={"help": "Vocabulary size, special tokens included."})
    model_type: str | None = field(
        default=None,
        metadata={
            "help": f"Model family the tokenizer is for; picks the kind: { {t: f.tokenizer_kind for t, f in FAMILIES.items()} }.",
            "choices": sorted(FAMILIES),
        },
    )
    kind: str | None = field(
        default=None,
        metadata={"help": "Tokenizer kind, instead of model_type.", "choices": TOKENIZER_KINDS},
    )
    min_frequency: int = field(
        default=2, metadata={"help": "Minimum count of a pair/subword to be merged in."}
    )
    model_max_length: int | None = field(
        default=None, metadata={"help": "Maximum sequence length recorded on the tokenizer (the model's)."}
    )
    max_texts: int | None = field(
        default=None, metadata={"help": "Train on the first N non-empty texts only."}
    )

    def __post_init__(self) -> None:
        if (self.model_type is None) == (self.kind is None):
            raise RecipeError("Give exactly one of --model_type and --kind.")
        if self.kind is None:
            self.kind = FAMILIES[self.model_type].tokenizer_kind
        if self.max_texts is not None and self.max_texts < 1:
            raise RecipeError(f"max_texts must be >= 1 when given, got {self.max_texts}.")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = HfArgumentParser((DataArguments, TokenizerTrainingArguments))
    data_args, tok_args = parser.parse_args_into_dataclasses(args=argv)

    dataset = load_text_dataset(data_args, data_args.train_split)
    texts = itertools.chain.from_iterable(batch_iterator(dataset, data_args.text_column))
    if tok_args.max_texts is not None:
        texts = itertools.islice(texts, tok_args.max_texts)

    start = time.perf_counter()
    tokenizer = train_tokenizer(
        texts,
        kind=tok_args.kind,
        vocab_size=tok_args.vocab_size,
        min_frequency=tok_args.min_frequency,
        model_max_length=tok_args.model_max_length,
    )
    seconds = time.perf_counter() - start
    tokenizer.save_pretrained(tok_args.output_dir)
    logger.info(
        "Trained a %s tokenizer with %d tokens in %.1f s (reading the data included); saved to %s",
        tok_args.kind,
        len(tokenizer),
        seconds,
        tok_args.output_dir,
    )


if __name__ == "__main__":
    with one_line_errors():
        main(sys.argv[1:])
