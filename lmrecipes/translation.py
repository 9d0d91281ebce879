"""Translation (Multi30k German -> English) with a transformers `EncoderDecoderModel`: the recipe's arguments, pairs
and their tokenization, tokenizers (trained or loaded), the model (warm-started or new), scoring of detokenized beam
search output, and the Seq2SeqTrainer that evaluates in row order. The run is scripts/finetune_translation.py; what
the output folder holds and how it loads: README, "Translation".
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, load_dataset
from torch.utils.data import SequentialSampler
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    EvalPrediction,
    GenerationConfig,
    PreTrainedTokenizerBase,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)
from transformers.trainer_utils import has_length

from lmrecipes import data, finetuning
from lmrecipes.families import FAMILIES, complete_auto_map
from lmrecipes.finetuning import FinetuneDataArguments
from lmrecipes.metrics import load_metric
from lmrecipes.modeling import ModelArguments, build_config
from lmrecipes.tokenization import train_tokenizer
from lmrecipes.training import RecipeSeq2SeqTrainer

logger = logging.getLogger(__name__)

ENCODER_FAMILY, DECODER_FAMILY = "mini_bert", "mini_gpt"
# (family, config class, model class, Auto class) to register before loading the folder without lmrecipes.
REMOTE_CODE_CLASSES = (
    (ENCODER_FAMILY, "MiniBertConfig", "MiniBertModel", AutoModel),
    (DECODER_FAMILY, "MiniGPTConfig", "MiniGPTForCausalLM", AutoModelForCausalLM),
)
TRANSLATIONS_FILENAME = "{split}_translations.jsonl"
# Where the target tokenizer goes when it differs from the source one: the layout the translation pipeline loads.
DECODER_TOKENIZER_FOLDER = "decoder_tokenizer"

# EncoderDecoderModel warns on every forward with labels that transformers 4.12 moved the loss out of the decoder: news
# for checkpoints trained before 4.12, noise here.
warnings.filterwarnings("ignore", message="Version v4.12.0 introduces a better way", category=FutureWarning)


@dataclass
class TranslationModelArguments:
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
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without improvement of metric_for_best_model (e.g. bleu; "
            "needs load_best_model_at_end)."
        },
    )
    early_stopping_threshold: float = field(
        default=0.0,
        metadata={"help": "How much metric_for_best_model must improve to count as an improvement."},
    )

    def __post_init__(self) -> None:
        paths = {
            name: getattr(self, name)
            for name in ("encoder_name_or_path", "decoder_name_or_path")
            if getattr(self, name)
        }
        missing = {"encoder_name_or_path", "decoder_name_or_path"} - paths.keys()
        if missing and (paths or not self.from_scratch):
            raise ValueError(
                f"{' and '.join(sorted(missing))}: name the pretrained mini_bert (encoder) and mini_gpt "
                "(decoder) output folders, or set from_scratch: true with neither"
            )
        if self.shared_tokenizer and not self.trains_tokenizers:
            raise ValueError(
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
            raise ValueError(f"source_lang and target_lang are both {self.source_lang!r}")
        for name in ("max_source_length", "max_target_length"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        if self.test_file is not None and not os.path.isfile(self.test_file):
            raise FileNotFoundError(f"test_file={self.test_file!r} does not exist or is not a file.")


# --------------------------------------------------------------------------------------------- data


def load_pairs(data_args: FinetuneDataArguments, task_args: TranslationArguments, split: str) -> Dataset:
    """One split as two columns named by language: from per-language columns (bentrevett/multi30k: en, de) or from
    a `translation` column of {language: text} dicts (wmt, iwslt)."""
    if split == task_args.test_split and task_args.test_file is not None:
        builder = finetuning.TASK_FILE_BUILDERS[os.path.splitext(task_args.test_file)[1].lower()]
        dataset = load_dataset(builder, data_files={split: task_args.test_file}, split=split)
    else:
        dataset = finetuning.load_split(data_args, split)
    languages = [task_args.source_lang, task_args.target_lang]
    columns = dataset.column_names
    if not set(languages) <= set(columns) and "translation" in columns:
        keys = sorted((dataset[0]["translation"] or {}).keys()) if len(dataset) else []
        missing = [lang for lang in languages if lang not in keys]
        if missing:
            raise ValueError(
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
        raise ValueError(
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
        raise ValueError("the target tokenizer has no eos token: the decoder could not learn where to stop")
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
    """finetuning.drop_bad_examples checks for a tokenized pair: each is True for a row to drop."""

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
    usable = finetuning.drop_bad_examples(tokenized, bad_pair_checks(task_args), description)
    inputs = usable.select_columns(["input_ids", "attention_mask", "labels"])
    return inputs, list(usable[task_args.source_lang]), list(usable[task_args.target_lang])


# --------------------------------------------------------------------------------------------- tokenizers and model


def train_translation_tokenizers(
    raw_train: Dataset, model_args: TranslationModelArguments, task_args: TranslationArguments
) -> tuple[PreTrainedTokenizerBase, PreTrainedTokenizerBase]:
    """New (source, target) tokenizers trained on the training pairs; one and the same when shared_tokenizer.

    Pairs with an empty or missing side still count here (they are dropped later, after tokenization): an empty
    text adds nothing to a tokenizer's statistics, and None is left out.
    """

    def texts(*languages: str):
        for batch in raw_train.select_columns(list(languages)).iter(batch_size=1000):
            for language in languages:
                yield from (text for text in batch[language] if isinstance(text, str))

    source, target = task_args.source_lang, task_args.target_lang
    if model_args.shared_tokenizer:
        shared = train_tokenizer(
            texts(source, target),
            kind=FAMILIES[DECODER_FAMILY].tokenizer_kind,
            vocab_size=model_args.tokenizer_vocab_size,
            model_max_length=max(task_args.max_source_length, task_args.max_target_length),
        )
        return shared, shared
    return (
        train_tokenizer(
            texts(source),
            kind=FAMILIES[ENCODER_FAMILY].tokenizer_kind,
            vocab_size=model_args.tokenizer_vocab_size,
            model_max_length=task_args.max_source_length,
        ),
        train_tokenizer(
            texts(target),
            kind=FAMILIES[DECODER_FAMILY].tokenizer_kind,
            vocab_size=model_args.tokenizer_vocab_size,
            model_max_length=task_args.max_target_length,
        ),
    )


def save_tokenizers(
    output_dir: str | Path,
    source_tokenizer: PreTrainedTokenizerBase,
    target_tokenizer: PreTrainedTokenizerBase,
) -> None:
    """Source tokenizer at the root, a different target tokenizer in decoder_tokenizer/ (the pipeline's layout)."""
    source_tokenizer.save_pretrained(output_dir)
    if target_tokenizer is not source_tokenizer:
        target_tokenizer.save_pretrained(Path(output_dir) / DECODER_TOKENIZER_FOLDER)


def load_saved_tokenizers(folder: str | Path) -> tuple[PreTrainedTokenizerBase, PreTrainedTokenizerBase]:
    """(source, target) tokenizers of an output folder; the target is the source one when none is saved apart."""
    source = AutoTokenizer.from_pretrained(folder)
    target_folder = Path(folder) / DECODER_TOKENIZER_FOLDER
    return source, (AutoTokenizer.from_pretrained(target_folder) if target_folder.is_dir() else source)


def load_tokenizers(
    model_args: TranslationModelArguments,
    task_args: TranslationArguments,
    training_args: Seq2SeqTrainingArguments,
    raw_train: Dataset,
) -> tuple[PreTrainedTokenizerBase, PreTrainedTokenizerBase]:
    """The pretrained folders' tokenizers; without folders, the ones an interrupted run saved, else new ones."""
    if not model_args.trains_tokenizers:
        return (
            AutoTokenizer.from_pretrained(model_args.encoder_name_or_path),
            AutoTokenizer.from_pretrained(model_args.decoder_name_or_path),
        )
    output_dir = Path(training_args.output_dir)
    with training_args.main_process_first(desc="training the tokenizers"):
        if not (output_dir / "tokenizer.json").is_file():
            source, target = train_translation_tokenizers(raw_train, model_args, task_args)
            save_tokenizers(output_dir, source, target)
            logger.info(
                "trained tokenizers on %d training pairs: source %d tokens, target %d tokens%s, saved to %s",
                len(raw_train),
                len(source),
                len(target),
                " (shared)" if source is target else "",
                output_dir,
            )
        else:
            logger.info("using the tokenizers an earlier run of this recipe saved in %s", output_dir)
        return load_saved_tokenizers(output_dir)


def decoder_start_token_id(target_tokenizer: PreTrainedTokenizerBase) -> int:
    """The token the decoder starts from: bos, as in the decoder's pretraining (GPT-2 style: bos = eos)."""
    token_id = target_tokenizer.bos_token_id
    if token_id is None:
        token_id = target_tokenizer.eos_token_id
    if token_id is None:
        raise ValueError("the target tokenizer has neither a bos nor an eos token to start decoding from")
    return token_id


def build_translation_model(
    model_args: TranslationModelArguments,
    source_tokenizer: PreTrainedTokenizerBase,
    target_tokenizer: PreTrainedTokenizerBase,
    *,
    max_source_positions: int,
    max_target_positions: int,
) -> EncoderDecoderModel:
    """The EncoderDecoderModel with the target tokenizer's special tokens set (no generation settings yet)."""
    if model_args.trains_tokenizers:

        def sized(family: str, prefix: str, max_positions: int) -> ModelArguments:
            return ModelArguments(
                model_type=family,
                hidden_size=getattr(model_args, f"{prefix}_hidden_size"),
                num_hidden_layers=getattr(model_args, f"{prefix}_num_hidden_layers"),
                num_attention_heads=getattr(model_args, f"{prefix}_num_attention_heads"),
                intermediate_size=getattr(model_args, f"{prefix}_intermediate_size"),
                max_position_embeddings=max_positions,
                dropout=model_args.dropout,
            )

        encoder_config = build_config(
            sized(ENCODER_FAMILY, "encoder", max_source_positions), source_tokenizer
        )
        decoder_config = build_config(
            sized(DECODER_FAMILY, "decoder", max_target_positions), target_tokenizer
        )
        # from_encoder_decoder_configs marks the decoder is_decoder and add_cross_attention.
        model = EncoderDecoderModel(
            config=EncoderDecoderConfig.from_encoder_decoder_configs(encoder_config, decoder_config)
        )
    else:
        if model_args.from_scratch:
            # The warm start's architecture with random weights; from_encoder_decoder_configs adds cross-attention
            # to the decoder, as from_encoder_decoder_pretrained does.
            model = EncoderDecoderModel(
                config=EncoderDecoderConfig.from_encoder_decoder_configs(
                    AutoConfig.from_pretrained(model_args.encoder_name_or_path),
                    AutoConfig.from_pretrained(model_args.decoder_name_or_path),
                )
            )
        else:
            model = EncoderDecoderModel.from_encoder_decoder_pretrained(
                model_args.encoder_name_or_path, model_args.decoder_name_or_path
            )
        for role, path, config, family in (
            ("encoder", model_args.encoder_name_or_path, model.config.encoder, ENCODER_FAMILY),
            ("decoder", model_args.decoder_name_or_path, model.config.decoder, DECODER_FAMILY),
        ):
            if config.model_type != family:
                raise ValueError(
                    f"{role}_name_or_path={path!r} holds a {config.model_type!r} model; the {role} must be {family}"
                )
        complete_auto_map(model.config.encoder)
        complete_auto_map(model.config.decoder)

    use_target_special_tokens(model, target_tokenizer)
    # EncoderDecoderModel's loss is a plain mean over the batch's label tokens and ignores the num_items_in_batch the
    # Trainer passes to any forward with **kwargs; left True, the Trainer would then skip dividing the loss by the
    # gradient accumulation steps (and scale it by the process count), as if the model had normalised it.
    model.accepts_loss_kwargs = False
    return model


def use_target_special_tokens(model: EncoderDecoderModel, target_tokenizer: PreTrainedTokenizerBase) -> None:
    """Point every special-token id of the model at the target tokenizer's: the decoder writes in its vocabulary."""
    start = decoder_start_token_id(target_tokenizer)
    # shift_tokens_right builds the decoder inputs from the labels with these two.
    model.config.decoder_start_token_id = start
    model.config.pad_token_id = target_tokenizer.pad_token_id
    ids = {"bos_token_id": start, "eos_token_id": target_tokenizer.eos_token_id}
    ids["pad_token_id"] = target_tokenizer.pad_token_id
    for config in (model.config.decoder, model.generation_config):
        for name, token_id in ids.items():
            setattr(config, name, token_id)
    model.generation_config.decoder_start_token_id = start


class KeepTargetSpecialTokens(TrainerCallback):
    """Undo the Trainer's special-token alignment, which follows the wrong tokenizer here.

    Trainer.train() copies pad/bos/eos of `processing_class` into the decoder config and the generation config (its
    "The tokenizer has new PAD/BOS/EOS tokens" warning). processing_class is the source tokenizer, the one saved at
    the root of every checkpoint where the pipeline looks for it; the decoder generates in the target vocabulary, so
    its ids are put back when training begins, before any evaluation or checkpoint.
    """

    def __init__(self, target_tokenizer: PreTrainedTokenizerBase) -> None:
        self.target_tokenizer = target_tokenizer

    def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
        use_target_special_tokens(model, self.target_tokenizer)


def set_generation_config(
    model: EncoderDecoderModel, target_tokenizer: PreTrainedTokenizerBase, *, num_beams: int, max_length: int
) -> GenerationConfig:
    """The decoding the evaluation scores; it is saved with the model, so model.generate() decodes the same way."""
    model.generation_config = GenerationConfig(
        num_beams=num_beams,
        max_length=max_length,
        use_cache=True,  # pretraining saved use_cache false in the decoder config; decoding wants the cache
    )
    use_target_special_tokens(model, target_tokenizer)
    return model.generation_config


def generation_settings(
    training_args: Seq2SeqTrainingArguments, task_args: TranslationArguments
) -> tuple[int, int]:
    """(num_beams, max_length) of the scored decoding; max_length counts the decoder start token."""
    if not training_args.predict_with_generate:
        raise ValueError(
            "predict_with_generate must be true: BLEU and chrF score the generated translations, not the logits"
        )
    num_beams = training_args.generation_num_beams or 1
    max_length = training_args.generation_max_length or task_args.max_target_length + 1
    if num_beams < 1 or max_length < 2:
        raise ValueError(
            f"generation_num_beams must be >= 1 and generation_max_length >= 2, got {num_beams}, {max_length}"
        )
    return num_beams, max_length


def check_lengths_fit(
    model: EncoderDecoderModel, task_args: TranslationArguments, generation_max_length: int
) -> None:
    """Fail before training if a kept pair or a generated translation would overrun a position table."""
    encoder_positions = getattr(model.config.encoder, "max_position_embeddings", None)
    decoder_positions = getattr(model.config.decoder, "max_position_embeddings", None)
    data.check_length_fits(
        "max_source_length", task_args.max_source_length, encoder_positions, part="encoder"
    )
    data.check_length_fits(
        "max_target_length", task_args.max_target_length, decoder_positions, part="decoder"
    )
    # The decoder reads at most max_length - 1 tokens: the last one generated is never fed back.
    data.check_length_fits(
        "generation_max_length",
        generation_max_length,
        decoder_positions,
        part="decoder",
        positions_needed=generation_max_length - 1,
    )


# --------------------------------------------------------------------------------------------- scoring


def generated_token_ids(token_ids: np.ndarray, eos_token_id: int) -> list[list[int]]:
    """The generated tokens of each row of generate() outputs, [decoder start, tokens..., eos, padding]: the start
    token dropped and the row cut at its first eos.

    What follows eos is padding, which the Seq2SeqTrainer fills with the *source* tokenizer's pad id (a real token of
    the target vocabulary when the two tokenizers differ) and with -100 between batches.
    """
    rows = []
    for row in np.asarray(token_ids):
        ids = [int(token) for token in row[1:]]
        if eos_token_id in ids:
            ids = ids[: ids.index(eos_token_id)]
        rows.append([token for token in ids if token >= 0])
    return rows


def decode_generated(token_ids: np.ndarray, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Detokenized text of generate() outputs, decoded with skip_special_tokens and stripped, as the pipeline does."""
    return [
        tokenizer.decode(ids, skip_special_tokens=True).strip()
        for ids in generated_token_ids(token_ids, tokenizer.eos_token_id)
    ]


class TranslationScorer:
    """compute_metrics for the Seq2SeqTrainer: sacreBLEU and chrF of the generated text against raw references.

    The Trainer hands over token ids only, so the references (raw strings, in the order of the evaluated dataset,
    which the evaluation keeps) are given here. The decoded predictions of the last call stay in `predictions`.
    """

    def __init__(self, target_tokenizer: PreTrainedTokenizerBase, references: Sequence[str]) -> None:
        self.tokenizer = target_tokenizer
        self.references = list(references)
        self.reference_labels = target_label_ids(target_tokenizer, self.references)
        self.bleu = load_metric("sacrebleu")
        self.chrf = load_metric("chrf")
        self.predictions: list[str] = []
        self.signatures: dict[str, str] = {}

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        generated = generated_token_ids(prediction.predictions, self.tokenizer.eos_token_id)
        predictions = [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]
        self.check_order(prediction.label_ids, len(predictions))
        self.predictions = predictions
        references = [[reference] for reference in self.references]
        bleu = self.bleu.compute(predictions=predictions, references=references)
        chrf = self.chrf.compute(predictions=predictions, references=references)
        self.signatures = {"bleu_signature": bleu["signature"], "chrf_signature": chrf["signature"]}
        return {
            "bleu": bleu["score"],
            "chrf": chrf["score"],
            "gen_len": float(np.mean([len(ids) for ids in generated])),  # tokens before eos
        }

    def check_order(self, label_ids: np.ndarray | None, num_predictions: int) -> None:
        """Fail unless the evaluated rows are the references, in the same order: their labels must match.

        The Trainer returns predictions in its evaluation order with no row indices, so a reordering (such as the
        length-grouped evaluation batches of train_sampling_strategy: group_by_length) would otherwise silently
        score each translation against another sentence's reference.
        """
        if num_predictions != len(self.references):
            raise ValueError(
                f"{num_predictions} translations for {len(self.references)} references: the evaluated dataset is "
                "not the one this scorer was built for"
            )
        if label_ids is None:
            return
        for row, (labels, expected) in enumerate(
            zip(np.asarray(label_ids), self.reference_labels, strict=True)
        ):
            # Labels come back padded (-100, or the source tokenizer's pad id): compare their first tokens.
            if labels[: len(expected)].tolist() != expected:
                raise ValueError(
                    f"evaluation row {row} does not hold the reference {self.references[row]!r}: the evaluation "
                    "visited the rows in another order than the dataset's, so the scores would be wrong"
                )


class TranslationTrainer(RecipeSeq2SeqTrainer):
    """RecipeSeq2SeqTrainer that evaluates the rows in dataset order.

    With train_sampling_strategy: group_by_length, transformers (5.23) batches evaluation by length too, in a
    shuffled order (Trainer._get_eval_sampler), and predictions carry no row indices: the generated translations
    would not line up with the references. Evaluation here is sequential, as without length grouping; the training
    batches keep theirs.
    """

    def _get_eval_sampler(self, eval_dataset: Dataset) -> SequentialSampler | None:
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        # Distributed: None lets accelerate shard the rows in order and gather them back in order.
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        # Seq2SeqTrainer.evaluate/predict (transformers 5.23) gather with accelerator.gather, for generations with
        # num_return_sequences > 1 (transformers PR #27025). That keeps the rows accelerate repeats to even out the
        # last batch across processes: with 2 processes the scorer got more translations than references. One
        # translation per row here, so gather_for_metrics, which drops the repeats, is right.
        self.gather_function = self.accelerator.gather_for_metrics
        return super().evaluation_loop(*args, **kwargs)


def write_translations(
    path: Path, sources: Sequence[str], references: Sequence[str], predictions: Sequence[str]
) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for source, reference, prediction in zip(sources, references, predictions, strict=True):
            line = {"source": source, "reference": reference, "prediction": prediction}
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
