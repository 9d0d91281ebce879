"""Train the tokenizers the recipes use, with the `tokenizers` library, wrapped as `PreTrainedTokenizerFast`.

Three kinds:

- ``byte_bpe`` (lstm_lm, mini_gpt): GPT-2 style byte-level BPE. Every byte is in the vocabulary, so any text
  round-trips exactly (`decode(encode(text)) == text`, newlines and unicode included) and nothing is unknown.
  Special tokens: ``<|endoftext|>`` (bos = eos = unk, as in GPT-2) and ``<pad>`` (a separate padding token, so
  the causal LM collator, which sets the labels of padding to -100, never hides a real end of text).
  Nothing is added around a text; the data pipeline appends eos between documents itself.
- ``wordpiece`` (mini_bert): uncased BERT WordPiece: BERT normalizer (lowercase, accents stripped, as bert-base-uncased) and
  pre-tokenizer, ``[PAD] [UNK] [CLS] [SEP] [MASK]`` and the BERT template ``[CLS] a [SEP]`` /
  ``[CLS] a [SEP] b [SEP]`` with token_type_ids 0 for a and 1 for b.
- ``word`` (a recipe's choice for word-level corpora: WikiText, PTB): one token per whitespace-separated word and
  one for each line break (the end-of-line token of the classic word-level models), the `vocab_size` most frequent
  words; others become ``<unk>`` (which WikiText's own unknown words already are). ``<|endoftext|>`` and ``<pad>``
  as for byte_bpe.

The returned tokenizer saves with `save_pretrained` and loads back with `AutoTokenizer.from_pretrained`, with its
special tokens set, so pipelines and collators work on it unchanged.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, TrainingArguments

from lmrecipes.errors import RecipeError

logger = logging.getLogger(__name__)

TokenizerKind = Literal["byte_bpe", "wordpiece", "word"]
TOKENIZER_KINDS: tuple[TokenizerKind, ...] = ("byte_bpe", "wordpiece", "word")

END_OF_TEXT_TOKEN = "<|endoftext|>"
BYTE_BPE_PAD_TOKEN = "<pad>"
BYTE_BPE_SPECIAL_TOKENS = [END_OF_TEXT_TOKEN, BYTE_BPE_PAD_TOKEN]
WORDPIECE_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORD_UNK_TOKEN = "<unk>"
# <unk> is not among them: WikiText's text holds it as a word, and a special token that the trainer also counts as a
# word ends up with two ids, one of them past the end of the vocabulary. It is added after training if unseen.
WORD_SPECIAL_TOKENS = [END_OF_TEXT_TOKEN, BYTE_BPE_PAD_TOKEN]
# The vocabulary files of the tokenizers transformers loads; a folder without any of them holds no tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")

# Texts handed to the Rust trainer per call: big enough to keep its threads busy, small enough to stream.
_TRAINER_BATCH_SIZE = 1000


def _batched_nonempty(texts: Iterable[str]) -> Iterator[list[str]]:
    """Group texts into lists for `train_from_iterator`, dropping empty ones, and fail on a non-string."""
    iterator = iter(texts)
    while batch := list(itertools.islice(iterator, _TRAINER_BATCH_SIZE)):
        for text in batch:
            if not isinstance(text, str):
                raise TypeError(
                    f"train_tokenizer expects an iterable of str, got an item of type {type(text).__name__}"
                )
        yield [text for text in batch if text]


def _byte_bpe(vocab_size: int, min_frequency: int) -> tuple[Tokenizer, trainers.Trainer]:
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    minimum_size = len(BYTE_BPE_SPECIAL_TOKENS) + len(alphabet)
    if vocab_size < minimum_size:
        raise RecipeError(
            f"vocab_size={vocab_size} is too small for a byte-level BPE tokenizer: its {len(BYTE_BPE_SPECIAL_TOKENS)} "
            f"special tokens and {len(alphabet)}-byte alphabet alone need {minimum_size}."
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # trim_offsets: a token's character offsets leave out its leading space (as RoBERTa), which is what
    # span tasks (question answering, token classification) need from offset mappings.
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=BYTE_BPE_SPECIAL_TOKENS,
        initial_alphabet=alphabet,
        show_progress=True,  # a progress bar on stderr: training a large vocabulary takes a while
    )
    return tokenizer, trainer


def _wordpiece(vocab_size: int, min_frequency: int) -> tuple[Tokenizer, trainers.Trainer]:
    if vocab_size <= len(WORDPIECE_SPECIAL_TOKENS):
        raise RecipeError(
            f"vocab_size={vocab_size} is too small for a WordPiece tokenizer: its "
            f"{len(WORDPIECE_SPECIAL_TOKENS)} special tokens alone need {len(WORDPIECE_SPECIAL_TOKENS)}, plus the "
            "characters of the corpus."
        )
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=WORDPIECE_SPECIAL_TOKENS,
        continuing_subword_prefix="##",
        show_progress=True,  # a progress bar on stderr: training a large vocabulary takes a while
    )
    return tokenizer, trainer


def _word(vocab_size: int, min_frequency: int) -> tuple[Tokenizer, trainers.Trainer]:
    if vocab_size <= len(WORD_SPECIAL_TOKENS) + 1:  # + <unk>
        raise RecipeError(
            f"vocab_size={vocab_size} is too small for a word-level tokenizer: its {len(WORD_SPECIAL_TOKENS) + 1} "
            "special tokens (with <unk>) alone fill it."
        )
    tokenizer = Tokenizer(models.WordLevel(unk_token=WORD_UNK_TOKEN))
    # The pieces are the matches: runs of non-space characters, and each line break on its own.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"\n|[^\s]+"), behavior="removed", invert=True)
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size - 1,  # room for <unk>
        min_frequency=min_frequency,
        special_tokens=WORD_SPECIAL_TOKENS,
        show_progress=True,
    )
    return tokenizer, trainer


_BUILDERS = {"byte_bpe": _byte_bpe, "wordpiece": _wordpiece, "word": _word}


def train_tokenizer(
    texts: Iterable[str],
    kind: TokenizerKind,
    vocab_size: int,
    min_frequency: int | None = None,
    model_max_length: int | None = None,
) -> PreTrainedTokenizerFast:
    """Train a tokenizer of the given kind on a stream of texts and wrap it for transformers.

    `min_frequency`: how often a merge (subword kinds) or a word must occur to enter the vocabulary; None: 2 for
    the subword kinds, 1 for `word` (a word-level benchmark's vocabulary is every training word). `texts` is
    consumed once, lazily (a generator over a streaming dataset is fine: see
    `lmrecipes.data.batch_iterator`). `model_max_length` is recorded on the tokenizer (the model's maximum
    sequence length); None leaves transformers' "no limit" default.
    """
    if kind not in _BUILDERS:
        raise RecipeError(f"Unknown tokenizer kind {kind!r}; expected one of {', '.join(TOKENIZER_KINDS)}.")
    if min_frequency is None:
        min_frequency = 1 if kind == "word" else 2
    if min_frequency < 1:
        raise RecipeError(f"min_frequency must be >= 1, got {min_frequency}.")
    if model_max_length is not None and model_max_length < 1:
        raise RecipeError(f"model_max_length must be >= 1, got {model_max_length}.")

    tokenizer, trainer = _BUILDERS[kind](vocab_size, min_frequency)

    seen_text = False

    def batches_noting_text() -> Iterator[list[str]]:
        nonlocal seen_text
        for batch in _batched_nonempty(texts):
            seen_text = seen_text or bool(batch)
            yield batch

    tokenizer.train_from_iterator(batches_noting_text(), trainer=trainer)
    if not seen_text:
        raise RecipeError(
            "Cannot train a tokenizer on an empty corpus: the texts given contain no non-empty string."
        )

    if kind == "word" and tokenizer.token_to_id(WORD_UNK_TOKEN) is None:
        vocabulary = tokenizer.get_vocab(with_added_tokens=True)
        vocabulary[WORD_UNK_TOKEN] = len(vocabulary)
        tokenizer.model = models.WordLevel(vocabulary, unk_token=WORD_UNK_TOKEN)

    trained_size = tokenizer.get_vocab_size()
    if trained_size > vocab_size:
        # The trainers always keep the special tokens and the whole alphabet (every character of the corpus, and
        # for WordPiece its "##" continuation form too), even past vocab_size.
        raise RecipeError(
            f"vocab_size={vocab_size} is too small for this corpus: the special tokens and the alphabet alone "
            f"need {trained_size} entries. Use vocab_size >= {trained_size}."
        )

    wrapper_kwargs = {} if model_max_length is None else {"model_max_length": model_max_length}
    if kind in ("byte_bpe", "word"):
        return PreTrainedTokenizerFast(
            tokenizer_object=tokenizer,
            bos_token=END_OF_TEXT_TOKEN,
            eos_token=END_OF_TEXT_TOKEN,
            unk_token=END_OF_TEXT_TOKEN if kind == "byte_bpe" else WORD_UNK_TOKEN,
            pad_token=BYTE_BPE_PAD_TOKEN,
            model_input_names=["input_ids", "attention_mask"],
            clean_up_tokenization_spaces=False,  # exact round trip: " ," must stay " ,"
            **wrapper_kwargs,
        )

    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,  # the WordPiece decoder already cleans up spaces before punctuation
        **wrapper_kwargs,
    )


def reuse_or_train_tokenizer(
    output_dir: str | Path, training_args: TrainingArguments, train_and_save: Callable[[], None]
) -> None:
    """Make sure `output_dir` holds the run's tokenizer: the one an interrupted run saved, else a new one.

    `train_and_save` trains and saves it; the main process does so first, the others wait and then find it saved.
    """
    with training_args.main_process_first(desc="training the tokenizer"):
        if (Path(output_dir) / "tokenizer.json").is_file():
            logger.info("using the tokenizer an earlier run of this recipe saved in %s", output_dir)
        else:
            train_and_save()
