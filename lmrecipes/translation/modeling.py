"""The translation model: tokenizers (trained on the pairs, or the pretrained folders'), the EncoderDecoderModel
(warm-started or new), its special tokens and decoding settings, and the check that every length fits."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from datasets import Dataset
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    GenerationConfig,
    PreTrainedTokenizerBase,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)

from lmrecipes import data
from lmrecipes.errors import RecipeError
from lmrecipes.families import FAMILIES, complete_auto_map
from lmrecipes.modeling import (
    ModelArguments,
    build_config,
    load_pretrained,
    max_positions,
    reading_pretrained,
)
from lmrecipes.tokenization import reuse_or_train_tokenizer, train_tokenizer
from lmrecipes.translation.processing import TranslationArguments, TranslationModelArguments

logger = logging.getLogger(__name__)

# The families that play encoder and decoder.
ENCODER_FAMILY, DECODER_FAMILY = "mini_bert", "mini_gpt"
# (family, config class, model class, Auto class) to register before loading the folder without lmrecipes.
REMOTE_CODE_CLASSES = (
    (ENCODER_FAMILY, "MiniBertConfig", "MiniBertModel", AutoModel),
    (DECODER_FAMILY, "MiniGPTConfig", "MiniGPTForCausalLM", AutoModelForCausalLM),
)
# Where the target tokenizer goes when it differs from the source one: the layout the translation pipeline loads.
DECODER_TOKENIZER_FOLDER = "decoder_tokenizer"

# EncoderDecoderModel warns on every forward with labels that transformers 4.12 moved the loss out of the decoder: news
# for checkpoints trained before 4.12, noise here.
warnings.filterwarnings("ignore", message="Version v4.12.0 introduces a better way", category=FutureWarning)


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
            load_pretrained(AutoTokenizer, model_args.encoder_name_or_path, "encoder_name_or_path"),
            load_pretrained(AutoTokenizer, model_args.decoder_name_or_path, "decoder_name_or_path"),
        )
    output_dir = training_args.output_dir

    def train_and_save() -> None:
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

    reuse_or_train_tokenizer(output_dir, training_args, train_and_save)
    return load_saved_tokenizers(output_dir)


def decoder_start_token_id(target_tokenizer: PreTrainedTokenizerBase) -> int:
    """The token the decoder starts from: bos, as in the decoder's pretraining (GPT-2 style: bos = eos)."""
    token_id = target_tokenizer.bos_token_id
    if token_id is None:
        token_id = target_tokenizer.eos_token_id
    if token_id is None:
        raise RecipeError("the target tokenizer has neither a bos nor an eos token to start decoding from")
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
                    load_pretrained(AutoConfig, model_args.encoder_name_or_path, "encoder_name_or_path"),
                    load_pretrained(AutoConfig, model_args.decoder_name_or_path, "decoder_name_or_path"),
                )
            )
        else:
            with reading_pretrained(
                "model",
                encoder_name_or_path=model_args.encoder_name_or_path,
                decoder_name_or_path=model_args.decoder_name_or_path,
            ):
                model = EncoderDecoderModel.from_encoder_decoder_pretrained(
                    model_args.encoder_name_or_path, model_args.decoder_name_or_path
                )
        for role, path, config, family in (
            ("encoder", model_args.encoder_name_or_path, model.config.encoder, ENCODER_FAMILY),
            ("decoder", model_args.decoder_name_or_path, model.config.decoder, DECODER_FAMILY),
        ):
            if config.model_type != family:
                raise RecipeError(
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
        raise RecipeError(
            "predict_with_generate must be true: BLEU and chrF score the generated translations, not the logits"
        )
    num_beams = training_args.generation_num_beams or 1
    max_length = training_args.generation_max_length or task_args.max_target_length + 1
    if num_beams < 1 or max_length < 2:
        raise RecipeError(
            f"generation_num_beams must be >= 1 and generation_max_length >= 2, got {num_beams}, {max_length}"
        )
    return num_beams, max_length


def check_lengths_fit(
    model: EncoderDecoderModel, task_args: TranslationArguments, generation_max_length: int
) -> None:
    """Fail before training if a kept pair or a generated translation would overrun a position table."""
    encoder_positions = max_positions(model.config.encoder)
    decoder_positions = max_positions(model.config.decoder)
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
