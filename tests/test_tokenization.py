"""Tokenizer training: round trips, special tokens and templates, save/load, clear errors."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, DataCollatorWithPadding, PreTrainedTokenizerFast

from lmrecipes.families import FAMILIES
from lmrecipes.tokenization import train_tokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog.\n",
    "A lobster is a marine crustacean; lobsters live on the sea floor.\n",
    "Language models predict the next token , one token at a time .\n",
    "",
    "Tokenizers split text into sub-word units, and merge frequent pairs.\n",
] * 20


@pytest.fixture(scope="module")
def byte_bpe() -> PreTrainedTokenizerFast:
    return train_tokenizer(iter(CORPUS), "byte_bpe", vocab_size=300, model_max_length=32)


@pytest.fixture(scope="module")
def wordpiece() -> PreTrainedTokenizerFast:
    return train_tokenizer(iter(CORPUS), "wordpiece", vocab_size=200, model_max_length=32)


@pytest.fixture(scope="module")
def word() -> PreTrainedTokenizerFast:
    return train_tokenizer(iter(CORPUS), "word", vocab_size=100, model_max_length=32)


def by_kind(kind, byte_bpe, wordpiece, word) -> PreTrainedTokenizerFast:
    return {"byte_bpe": byte_bpe, "wordpiece": wordpiece, "word": word}[kind]


def test_kind_by_model_type():
    assert {model_type: family.tokenizer_kind for model_type, family in FAMILIES.items()} == {
        "lstm_lm": "byte_bpe",
        "mini_gpt": "byte_bpe",
        "mini_bert": "wordpiece",
    }


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox.",
        "  leading spaces, trailing newline\n\nand a blank line\n",
        "tabs\tand , spaced punctuation . ",
        "Unicode: Héllo wörld, 日本語, emoji 🦞, Ελληνικά — “quotes”",
        "<unk> tokens stay text",
    ],
)
def test_byte_bpe_round_trips_any_text_exactly(byte_bpe, text):
    ids = byte_bpe(text)["input_ids"]
    assert byte_bpe.decode(ids) == text
    assert byte_bpe.unk_token_id not in ids  # byte-level: nothing is unknown


def test_byte_bpe_special_tokens_and_no_added_tokens(byte_bpe):
    assert len(byte_bpe) == 300
    assert byte_bpe.bos_token == byte_bpe.eos_token == byte_bpe.unk_token == "<|endoftext|>"
    assert byte_bpe.pad_token == "<pad>"
    assert byte_bpe.pad_token_id != byte_bpe.eos_token_id
    assert byte_bpe.model_max_length == 32
    encoding = byte_bpe("the lazy dog")
    assert byte_bpe.eos_token_id not in encoding["input_ids"]
    assert byte_bpe.decode(encoding["input_ids"]) == "the lazy dog"
    assert set(encoding) == {"input_ids", "attention_mask"}  # no token_type_ids for GPT-style models
    # BPE learned merges: frequent words are fewer tokens than bytes.
    assert len(byte_bpe("lobster")["input_ids"]) < len("lobster")


def test_wordpiece_template_and_special_tokens(wordpiece):
    assert (
        wordpiece.pad_token,
        wordpiece.unk_token,
        wordpiece.cls_token,
        wordpiece.sep_token,
        wordpiece.mask_token,
    ) == (
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    )
    single = wordpiece("the lazy dog")
    tokens = wordpiece.convert_ids_to_tokens(single["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert tokens.count("[SEP]") == 1

    pair = wordpiece("the lazy dog", "a fox")
    tokens = wordpiece.convert_ids_to_tokens(pair["input_ids"])
    first_sep = tokens.index("[SEP]")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
    assert pair["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)


def test_wordpiece_round_trip_modulo_normalisation(wordpiece):
    text = "The Lazy DOG jumps over the quick brown fox."
    ids = wordpiece(text)["input_ids"]
    assert wordpiece.decode(ids, skip_special_tokens=True) == text.lower()
    # An unseen word is split into known pieces with "##" continuations and decodes back whole.
    unseen = wordpiece("foxdog", add_special_tokens=False)["input_ids"]
    assert len(unseen) > 1 and wordpiece.convert_ids_to_tokens(unseen)[1].startswith("##")
    assert wordpiece.decode(unseen) == "foxdog"


def test_word_level_gives_a_token_per_word_and_per_line_break(word):
    """The classic word-level setup: whitespace-separated words, an end-of-line token, unknown words as <unk>."""
    text = "the lazy lobster , on the sea floor.\n\nthe zebra <unk>\n"
    tokens = word.convert_ids_to_tokens(word(text)["input_ids"])
    assert tokens == [
        "the",
        "lazy",
        "lobster",
        ",",
        "on",
        "the",
        "sea",
        "floor.",
        "\n",
        "\n",
        "the",
        "<unk>",
        "<unk>",
        "\n",
    ]
    assert word.unk_token == "<unk>" and word.convert_tokens_to_ids("<unk>") == word.unk_token_id
    assert word.eos_token == word.bos_token == "<|endoftext|>" and word.pad_token == "<pad>"
    assert len(word) == 3 + 40 + 1  # special tokens, the corpus's 40 words, the line break

    # vocabulary 10: the 7 most frequent words and the line break only
    top = train_tokenizer(iter(CORPUS), "word", vocab_size=10)
    assert len(top) == 10 and top.convert_ids_to_tokens(top("the sea floor")["input_ids"]) == [
        "the",
        "<unk>",
        "<unk>",
    ]


def test_word_level_ids_are_contiguous_when_the_corpus_holds_unk():
    """WikiText writes its unknown words as <unk>: that word is the tokenizer's unk, and no id is past the end."""
    tokenizer = train_tokenizer(["a b <unk> c <unk> a\n"] * 3, "word", vocab_size=100)
    ids = tokenizer("a zebra <unk> b\n")["input_ids"]
    assert ids[1] == ids[2] == tokenizer.unk_token_id
    assert sorted(tokenizer.get_vocab().values()) == list(range(len(tokenizer)))


def test_word_level_ids_follow_frequency():
    """An adaptive softmax (lstm_lm's adaptive_softmax_cutoffs) puts the lowest ids in its full-width head."""
    tokenizer = train_tokenizer(["rare " + "mid " * 3 + "top " * 9 + "\n"] * 2, "word", vocab_size=100)
    word_ids = tokenizer.convert_tokens_to_ids(["top", "mid", "rare"])
    assert word_ids == sorted(word_ids) and max(word_ids) < len(tokenizer)


def test_word_level_keeps_words_seen_once_by_default():
    """A word-level benchmark's vocabulary is every training word: no frequency floor, unlike subword merges."""
    tokenizer = train_tokenizer(["common common rare\n"], "word", vocab_size=100)
    assert tokenizer.unk_token_id not in tokenizer("rare")["input_ids"]


@pytest.mark.parametrize("kind", ["byte_bpe", "wordpiece", "word"])
def test_save_and_load_with_auto_tokenizer(tmp_path, byte_bpe, wordpiece, word, kind):
    tokenizer = by_kind(kind, byte_bpe, wordpiece, word)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "The lazy lobster , on the sea floor.\n"
    assert loaded(text) == tokenizer(text)
    assert loaded(text, "a pair") == tokenizer(text, "a pair")
    assert loaded.all_special_tokens == tokenizer.all_special_tokens
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.mask_token_id) == (
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        tokenizer.mask_token_id,
    )
    assert loaded.model_max_length == 32
    assert loaded.model_input_names == tokenizer.model_input_names


@pytest.mark.parametrize("kind", ["byte_bpe", "wordpiece", "word"])
def test_padding_collator_uses_the_pad_token(byte_bpe, wordpiece, word, kind):
    tokenizer = by_kind(kind, byte_bpe, wordpiece, word)
    features = [tokenizer("the lazy dog"), tokenizer("the quick brown fox jumps over")]
    batch = DataCollatorWithPadding(tokenizer)(features)
    short = len(features[0]["input_ids"])
    assert batch["input_ids"].shape[0] == 2
    assert torch.all(batch["input_ids"][0, short:] == tokenizer.pad_token_id)
    assert torch.all(batch["attention_mask"][0, short:] == 0)


def test_empty_corpus_is_an_error():
    with pytest.raises(ValueError, match="empty corpus"):
        train_tokenizer(["", ""], "byte_bpe", vocab_size=300)
    with pytest.raises(ValueError, match="empty corpus"):
        train_tokenizer(iter([]), "wordpiece", vocab_size=100)


def test_vocab_too_small_is_an_error():
    with pytest.raises(ValueError, match=r"vocab_size=100 .*258"):
        train_tokenizer(CORPUS, "byte_bpe", vocab_size=100)
    # WordPiece keeps every character (and its ## form): this corpus needs more than 20 entries.
    with pytest.raises(ValueError, match=r"vocab_size=20 is too small for this corpus"):
        train_tokenizer(CORPUS, "wordpiece", vocab_size=20)
    with pytest.raises(ValueError, match=r"vocab_size=3 is too small for a word-level tokenizer"):
        train_tokenizer(CORPUS, "word", vocab_size=3)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="Unknown tokenizer kind"):
        train_tokenizer(CORPUS, "sentencepiece", vocab_size=300)
    with pytest.raises(TypeError, match="iterable of str"):
        train_tokenizer([b"bytes"], "byte_bpe", vocab_size=300)
