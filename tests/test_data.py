"""Data library: mirror resolution, loading errors, packing (map-style == streaming), distribution, collators."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest
import torch
from datasets import Dataset, IterableDataset
from helpers import DATA_MIRROR, needs_mirror
from transformers import GPT2Config

from lmrecipes.data import (
    DataArguments,
    DatasetArguments,
    batch_iterator,
    build_lm_dataset,
    check_length_fits,
    check_tokenizer_fits_model,
    lm_data_collator,
    load_text_dataset,
    prepare_lm_dataset,
    resolve_dataset,
)
from lmrecipes.errors import RecipeError
from lmrecipes.finetuning import FinetuneDataArguments
from lmrecipes.tokenization import train_tokenizer

WIKITEXT = "Salesforce/wikitext"
WIKITEXT_CONFIG = "wikitext-2-v1"
needs_wikitext = needs_mirror(WIKITEXT)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.\n",
    "A lobster is a marine crustacean; lobsters live on the sea floor.\n",
    "Language models predict the next token , one token at a time .\n",
] * 20


@pytest.fixture(autouse=True)
def offline_with_mirror(monkeypatch):
    """Never touch the Hub; read datasets from the shared mirror."""
    monkeypatch.setenv("LMRECIPES_DATA_MIRROR", str(DATA_MIRROR))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The libraries read HF_HUB_OFFLINE at import time, which may have happened already.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def byte_bpe():
    return train_tokenizer(CORPUS, "byte_bpe", vocab_size=300)


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer(CORPUS, "wordpiece", vocab_size=200)


def wikitext_args(**overrides) -> DataArguments:
    return DataArguments(dataset_name=WIKITEXT, dataset_config_name=WIKITEXT_CONFIG, **overrides)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


# --- mirror ---------------------------------------------------------------------------------------------------


def test_resolve_dataset_prefers_the_mirror(tmp_path, monkeypatch):
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.setenv("LMRECIPES_DATA_MIRROR", str(tmp_path))
    assert resolve_dataset("org/name") == str(tmp_path / "org" / "name")
    assert resolve_dataset("org/other") == "org/other"  # not mirrored: Hub id unchanged
    assert resolve_dataset(str(tmp_path / "org")) == str(tmp_path / "org")  # absolute paths untouched
    monkeypatch.delenv("LMRECIPES_DATA_MIRROR")
    assert resolve_dataset("org/name") == "org/name"
    monkeypatch.setenv("LMRECIPES_DATA_MIRROR", str(tmp_path / "missing"))
    assert resolve_dataset("org/name") == "org/name"


# --- arguments and loading errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("arguments", [DataArguments, FinetuneDataArguments], ids=lambda cls: cls.__name__)
def test_both_data_argument_classes_check_the_data_source(arguments, tmp_path):
    """Pretraining and fine-tuning recipes share one check of where the data comes from."""
    with pytest.raises(ValueError, match="No data given"):
        arguments()
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "hello", "label": 0}])
    with pytest.raises(ValueError, match="not both"):
        arguments(dataset_name="stanfordnlp/sst2", train_file=train)
    with pytest.raises(ValueError, match="dataset_config_name only applies to dataset_name"):
        arguments(train_file=train, dataset_config_name="default")
    with pytest.raises(FileNotFoundError, match="validation_file='/no/such/file.jsonl'"):
        arguments(train_file=train, validation_file="/no/such/file.jsonl")
    (tmp_path / "validation.csv").write_text("text,label\nhi,1\n")
    with pytest.raises(ValueError, match="must have the same format"):
        arguments(train_file=train, validation_file=str(tmp_path / "validation.csv"))
    with pytest.raises(ValueError, match="train_split and eval_split are both 'train'"):
        arguments(dataset_name="stanfordnlp/sst2", eval_split="train")
    # fine-tuning needs labelled rows, so plain text files are for pretraining only
    text_file = tmp_path / "train.txt"
    text_file.write_text("hello\n")
    if arguments is FinetuneDataArguments:
        with pytest.raises(ValueError, match="unsupported extension '.txt'"):
            arguments(train_file=str(text_file))
    else:
        assert arguments(train_file=str(text_file)).train_file == str(text_file)


def test_data_arguments_validation(tmp_path):
    with pytest.raises(ValueError, match="No data given"):
        DataArguments()
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "hello\n"}])
    with pytest.raises(ValueError, match="not both"):
        DataArguments(dataset_name=WIKITEXT, train_file=train)
    with pytest.raises(FileNotFoundError, match="train_file='/no/such/file.txt'"):
        DataArguments(train_file="/no/such/file.txt")
    (tmp_path / "train.xml").write_text("<t/>")
    with pytest.raises(ValueError, match="unsupported extension '.xml'"):
        DataArguments(train_file=str(tmp_path / "train.xml"))
    with pytest.raises(ValueError, match="block_size must be >= 2"):
        DataArguments(dataset_name=WIKITEXT, block_size=1)
    with pytest.raises(ValueError, match="max_train_samples must be >= 1"):
        DataArguments(dataset_name=WIKITEXT, max_train_samples=0)


@needs_wikitext
def test_load_from_the_mirror_map_style_and_streaming():
    dataset = load_text_dataset(wikitext_args(), "validation")
    assert isinstance(dataset, Dataset) and len(dataset) == 3760 and dataset.column_names == ["text"]
    stream = load_text_dataset(wikitext_args(streaming=True), "validation")
    assert isinstance(stream, IterableDataset)
    assert [row["text"] for row in stream.take(5)] == dataset[:5]["text"]


def test_missing_dataset_is_named():
    with pytest.raises(FileNotFoundError, match="Dataset 'no-such-org/no-such-dataset' not found.*mirror"):
        load_text_dataset(DataArguments(dataset_name="no-such-org/no-such-dataset"), "train")


@needs_wikitext
@pytest.mark.parametrize("streaming", [False, True])
def test_unknown_config_lists_the_available_ones(streaming):
    args = DataArguments(dataset_name=WIKITEXT, dataset_config_name="wikitext-103-v1", streaming=streaming)
    with pytest.raises(
        ValueError, match=r"Unknown dataset_config_name 'wikitext-103-v1'.*\['wikitext-2-v1'\]"
    ):
        load_text_dataset(args, "train")


@needs_wikitext
@pytest.mark.parametrize("streaming", [False, True])
def test_missing_split_lists_the_available_ones(streaming):
    with pytest.raises(ValueError, match=r"no split 'dev'.*\['train', 'validation', 'test'\]"):
        load_text_dataset(wikitext_args(streaming=streaming), "dev")


@pytest.mark.parametrize("streaming", [False, True])
def test_missing_text_column_lists_the_columns(tmp_path, streaming):
    train = write_jsonl(tmp_path / "train.jsonl", [{"sentence": "hello", "label": 1}])
    args = DataArguments(train_file=train, streaming=streaming)
    with pytest.raises(ValueError, match=r"no column 'text'.*\['sentence', 'label'\]"):
        load_text_dataset(args, "train")
    with pytest.raises(ValueError, match="'label' holds .*int64.*not text"):
        load_text_dataset(DataArguments(train_file=train, text_column="label", streaming=streaming), "train")


@pytest.mark.parametrize("streaming", [False, True])
def test_empty_corpus_is_an_error(tmp_path, streaming):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": ""}, {"text": ""}, {"text": None}])
    with pytest.raises(ValueError, match="has no text: all 3 rows of 'text' are empty"):
        load_text_dataset(DataArguments(train_file=train, streaming=streaming), "train")


@pytest.mark.parametrize(
    "file_name, content, problem",
    [
        ("train.jsonl", "", "is empty (0 bytes)"),
        ("train.csv", "", "is empty (0 bytes)"),
        ("train.txt", "", "is empty (0 bytes)"),
        ("train.csv", "sentence,label\n", "has a header but no rows"),
        ("train.json", "[]", "holds no records"),
        ("train.jsonl", '{"sentence": "unclosed\n', "cannot be read as json"),
    ],
)
def test_an_empty_or_unreadable_file_is_named_in_one_line(tmp_path, file_name, content, problem):
    """datasets says "An error occurred while generating the dataset" (or "corresponds to no data") without a name."""
    train = tmp_path / file_name
    train.write_text(content)
    extension = train.suffix
    validation = tmp_path / f"validation{extension}"
    good = {
        ".jsonl": '{"text": "fine"}\n',
        ".json": '[{"text": "fine"}]',
        ".csv": "text\nfine\n",
        ".txt": "fine\n",
    }
    validation.write_text(good[extension])
    args = DatasetArguments(train_file=str(train), validation_file=str(validation))
    with pytest.raises(RecipeError) as raised:
        args.load_split("train")
    message = str(raised.value)
    assert message.startswith(f"train_file={str(train)!r} {problem}") and "\n" not in message
    assert len(args.load_split("validation")) == 1  # the good file still loads
    carving = DatasetArguments(train_file=str(train))  # the validation rows cut from the same file
    with pytest.raises(RecipeError, match=f"train_file={re.escape(repr(str(train)))} {re.escape(problem)}"):
        carving.load_split("validation")


def test_a_train_file_alone_gives_its_first_rows_to_validation(tmp_path):
    """run_clm's validation_split_percentage: a single local file still trains and evaluates."""
    train = tmp_path / "train.txt"
    train.write_text("".join(f"line {i}\n" for i in range(40)))
    args = DataArguments(train_file=str(train), validation_split_percentage=10)
    validation, training = load_text_dataset(args, "validation"), load_text_dataset(args, "train")
    assert validation["text"] == [f"line {i}\n" for i in range(4)]  # line breaks kept: lines of one document
    assert training["text"] == [f"line {i}\n" for i in range(4, 40)]  # disjoint, nothing lost
    with pytest.raises(ValueError, match="has 2 rows: validation_split_percentage=5 leaves no row"):
        train.write_text("first line\nsecond line\n")
        load_text_dataset(DataArguments(train_file=str(train)), "validation")
    with pytest.raises(ValueError, match="no validation split can be cut from it: set validation_file"):
        load_text_dataset(DataArguments(train_file=str(train), streaming=True), "validation")
    with pytest.raises(ValueError, match="validation_split_percentage must be between 1 and 99"):
        DataArguments(train_file=str(train), validation_split_percentage=0)


# --- packing ----------------------------------------------------------------------------------------------------


@needs_wikitext
@pytest.mark.parametrize("kind", ["byte_bpe", "wordpiece"])
def test_streaming_and_map_style_give_identical_blocks(kind, byte_bpe, wordpiece):
    tokenizer = byte_bpe if kind == "byte_bpe" else wordpiece
    rows = 300
    map_style = load_text_dataset(wikitext_args(), "validation").select(range(rows))
    stream = load_text_dataset(wikitext_args(streaming=True), "validation").take(rows)
    # A small batch_size so the comparison crosses several packing batches.
    blocks = build_lm_dataset(map_style, tokenizer, block_size=32, batch_size=64)
    streamed_blocks = build_lm_dataset(stream, tokenizer, block_size=32, batch_size=64)
    assert isinstance(streamed_blocks, IterableDataset)
    streamed = list(streamed_blocks)
    assert len(blocks) > 100
    assert [block["input_ids"] for block in streamed] == blocks["input_ids"]
    assert all(len(ids) == 32 for ids in blocks["input_ids"])
    assert all(mask == [1] * 32 for mask in blocks["attention_mask"])
    if kind == "wordpiece":  # every block is a well-formed BERT input
        assert all(
            ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
            for ids in blocks["input_ids"]
        )
    else:  # packing keeps the text: the first block decodes to the start of the corpus
        text = "".join(map_style[:20]["text"])
        assert text.startswith(tokenizer.decode(blocks[0]["input_ids"] + blocks[1]["input_ids"]))


def test_document_separators(byte_bpe):
    eos = byte_bpe.eos_token_id
    rows = {"text": ["a line of a document\n", "", "a whole review", "another review"]}
    dataset = Dataset.from_dict(rows)

    def token_stream(separate_rows: str) -> list[int]:
        blocks = build_lm_dataset(dataset, byte_bpe, block_size=2, separate_rows=separate_rows)
        return list(itertools.chain.from_iterable(blocks["input_ids"]))

    encoded = [byte_bpe(text)["input_ids"] for text in rows["text"]]
    auto = (
        encoded[0] + encoded[2] + [eos] + encoded[3] + [eos]
    )  # newline-ended line: no eos; empty row: nothing
    assert token_stream("auto") == auto[: len(auto) // 2 * 2]
    always = encoded[0] + [eos] + encoded[2] + [eos] + encoded[3] + [eos]
    assert token_stream("always") == always[: len(always) // 2 * 2]
    never = encoded[0] + encoded[2] + encoded[3]
    assert token_stream("never") == never[: len(never) // 2 * 2]


def test_streaming_is_lazy(byte_bpe):
    rows_read = 0

    def rows():
        nonlocal rows_read
        for _ in range(10_000):
            rows_read += 1
            yield {"text": "the lazy dog jumps over the quick brown fox\n"}

    stream = IterableDataset.from_generator(
        rows, features=datasets.Features({"text": datasets.Value("string")})
    )
    blocks = build_lm_dataset(stream, byte_bpe, block_size=16, batch_size=50)
    assert rows_read == 0  # nothing tokenized while building the pipeline
    first = next(iter(blocks))
    assert len(first["input_ids"]) == 16
    assert rows_read <= 100  # the first block needs one packing batch, not a full pass


def test_block_size_and_vocab_checks(byte_bpe):
    dataset = Dataset.from_dict({"text": ["some text\n"] * 4})
    with pytest.raises(ValueError, match=r"block_size=64 exceeds .*max_position_embeddings=32"):
        build_lm_dataset(dataset, byte_bpe, block_size=64, model_max_positions=32)
    check_length_fits("block_size", 10_000, None)  # LSTM: no maximum

    check_tokenizer_fits_model(byte_bpe, GPT2Config(vocab_size=len(byte_bpe)))
    with pytest.raises(ValueError, match=r"tokenizer has 300 tokens but the model's vocab_size is 256"):
        check_tokenizer_fits_model(byte_bpe, GPT2Config(vocab_size=256))


def test_block_too_small_for_special_tokens(wordpiece):
    with pytest.raises(ValueError, match="block_size=2 leaves no room for text"):
        build_lm_dataset(Dataset.from_dict({"text": ["a b c"]}), wordpiece, block_size=2)


@needs_wikitext
def test_prepare_lm_dataset_limits_and_shuffles_the_training_stream(byte_bpe):
    # Evaluation split: the first max_eval_samples blocks, in order.
    eval_args = wikitext_args(streaming=True, block_size=32, max_eval_samples=40)
    ordered = [block["input_ids"] for block in prepare_lm_dataset(eval_args, byte_bpe, "validation")]
    assert (
        ordered
        == build_lm_dataset(load_text_dataset(wikitext_args(), "validation"), byte_bpe, 32)[:40]["input_ids"]
    )
    # Training split (validation plays it here to stay small): the same blocks, shuffled.
    train_args = wikitext_args(
        streaming=True,
        block_size=32,
        max_train_samples=40,
        shuffle_buffer_size=100,
        train_split="validation",
        eval_split="test",
    )
    shuffled = [
        block["input_ids"] for block in prepare_lm_dataset(train_args, byte_bpe, "validation", seed=1)
    ]
    assert shuffled != ordered and sorted(shuffled) == sorted(ordered)
    # Map-style: limited, not shuffled (the Trainer's sampler does it).
    map_args = wikitext_args(block_size=32, max_train_samples=40, train_split="validation", eval_split="test")
    assert prepare_lm_dataset(map_args, byte_bpe, "validation")["input_ids"] == ordered


# --- collators and tokenizer-training input --------------------------------------------------------------------


def test_masked_lm_collator_masks_about_15_percent(wordpiece):
    dataset = Dataset.from_dict({"text": CORPUS * 5})
    blocks = build_lm_dataset(dataset, wordpiece, block_size=32)
    collator = lm_data_collator(wordpiece, "masked", seed=0)
    batch = collator([blocks[i] for i in range(len(blocks))])
    original = torch.tensor(blocks["input_ids"])
    chosen = batch["labels"] != -100
    special = (original == wordpiece.cls_token_id) | (original == wordpiece.sep_token_id)
    assert not chosen[special].any()  # [CLS]/[SEP] are never masked
    assert 0.10 < chosen.float().mean().item() < 0.20
    assert torch.equal(batch["labels"][chosen], original[chosen])  # labels are the original tokens
    masked = batch["input_ids"][chosen] == wordpiece.mask_token_id
    assert 0.7 < masked.float().mean().item() < 0.9  # 80% of chosen become [MASK]
    assert torch.equal(batch["input_ids"][~chosen], original[~chosen])  # the rest is untouched


def test_causal_lm_collator(byte_bpe):
    features = [{"input_ids": [5, 6, 7, 8]}, {"input_ids": [9, 10]}]
    batch = lm_data_collator(byte_bpe, "causal")(features)
    assert batch["labels"].tolist() == [[5, 6, 7, 8], [9, 10, -100, -100]]  # padding is not a target
    assert batch["input_ids"][1, 2:].tolist() == [byte_bpe.pad_token_id] * 2
    with pytest.raises(ValueError, match="mask token"):
        lm_data_collator(byte_bpe, "masked")


@pytest.mark.parametrize("streaming", [False, True])
def test_batch_iterator_streams_non_empty_texts(tmp_path, streaming):
    rows = [{"text": f"line {i}\n" if i % 3 else ""} for i in range(10)]
    dataset = load_text_dataset(
        DataArguments(train_file=write_jsonl(tmp_path / "t.jsonl", rows), streaming=streaming), "train"
    )
    batches = list(batch_iterator(dataset, "text", batch_size=4))
    assert all(isinstance(batch, list) and len(batch) <= 4 for batch in batches)
    assert list(itertools.chain.from_iterable(batches)) == [row["text"] for row in rows if row["text"]]
