"""Pretraining: train a tokenizer-equipped model of any family from scratch on a corpus, with the Trainer.

`scripts/pretrain.py` parses a recipe and calls `pretrain`. Causal LM for `lstm_lm` and `mini_gpt`, masked LM for
`mini_bert`. The output folder holds the model, its tokenizer, `all_results.json` and a model card, and loads with
`from_pretrained`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, TrainingArguments, set_seed

from lmrecipes import data
from lmrecipes.cards import build_model_card, save_recipe
from lmrecipes.evaluation import published_metrics
from lmrecipes.hub import prepare_trainer_push, push_trained_model
from lmrecipes.launch import check_world_size
from lmrecipes.modeling import (
    OBJECTIVE_BY_MODEL_TYPE,
    ModelArguments,
    build_pretraining_model,
    max_positions,
)
from lmrecipes.tbptt import TBPTTTrainer, check_truncated_bptt_arguments
from lmrecipes.tokenization import TOKENIZER_KIND_BY_MODEL_TYPE, train_tokenizer
from lmrecipes.training import LMTrainer, last_complete_checkpoint

logger = logging.getLogger(__name__)


def load_or_train_tokenizer(
    model_args: ModelArguments, data_args: data.DataArguments, training_args: TrainingArguments
) -> PreTrainedTokenizerBase:
    """The recipe's tokenizer; else the one a previous (interrupted) run saved; else train one on the train split."""
    if model_args.tokenizer_name_or_path:
        return AutoTokenizer.from_pretrained(model_args.tokenizer_name_or_path)
    if model_args.model_name_or_path:
        return AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    output_dir = Path(training_args.output_dir)
    with training_args.main_process_first(desc="training the tokenizer"):
        if not (output_dir / "tokenizer.json").is_file():
            texts = data.batch_iterator(
                data.load_text_dataset(data_args, data_args.train_split), data_args.text_column
            )
            tokenizer = train_tokenizer(
                (text for batch in texts for text in batch),
                kind=TOKENIZER_KIND_BY_MODEL_TYPE[model_args.model_type],
                vocab_size=model_args.tokenizer_vocab_size,
                model_max_length=data_args.block_size,
            )
            tokenizer.save_pretrained(output_dir)
            logger.info("trained a %d-token tokenizer, saved to %s", len(tokenizer), output_dir)
        return AutoTokenizer.from_pretrained(output_dir)


def pretrain(
    model_args: ModelArguments,
    data_args: data.DataArguments,
    training_args: TrainingArguments,
    recipe: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Run a pretraining recipe end to end and return the final metrics (also in `all_results.json`)."""
    check_world_size(training_args)
    set_seed(training_args.seed)
    objective = OBJECTIVE_BY_MODEL_TYPE[model_args.model_type]
    output_dir = Path(training_args.output_dir)

    # Everything that can be wrong with the inputs is checked here, before the first step.
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("max_steps: a streamed corpus has no length, so the recipe must set max_steps > 0")
    if model_args.truncated_bptt:
        check_truncated_bptt_arguments(model_args.model_type, data_args.streaming, training_args)
    prepare_trainer_push(training_args)  # no token: fail now, not after training
    if training_args.should_save and recipe is not None:
        save_recipe(output_dir, recipe)
    tokenizer = load_or_train_tokenizer(model_args, data_args, training_args)
    model = build_pretraining_model(model_args, tokenizer)
    data.check_tokenizer_fits_model(tokenizer, model.config)
    with training_args.main_process_first(desc="tokenizing and packing"):
        train_dataset, eval_dataset = (
            data.prepare_lm_dataset(
                data_args,
                tokenizer,
                split,
                model_max_positions=max_positions(model.config),
                seed=training_args.seed,
            )
            for split in (data_args.train_split, data_args.eval_split)
        )

    logger.info(
        "%s: %.2fM parameters, %s objective", model_args.model_type, model.num_parameters() / 1e6, objective
    )
    trainer_class = TBPTTTrainer if model_args.truncated_bptt else LMTrainer
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=data.lm_data_collator(tokenizer, objective),
    )
    # An interrupted run resumes by itself from its last complete checkpoint, stream position included.
    checkpoint = training_args.resume_from_checkpoint or last_complete_checkpoint(output_dir)
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)

    trainer.save_model()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    eval_metrics = trainer.evaluate()
    if data_args.max_eval_samples is None and trainer.is_world_process_zero():
        # The whole split in the units papers publish (word perplexity, bits per character), whatever the tokenizer.
        eval_metrics |= published_metrics(trainer.model, tokenizer, data_args)
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)  # also merged into all_results.json, with the train metrics
    if training_args.should_save:
        tokenizer.save_pretrained(output_dir)
        build_model_card(output_dir, recipe, repo_id=training_args.hub_model_id)
    push_trained_model(trainer)
    return {**train_result.metrics, **eval_metrics}


@torch.no_grad()
def sample(output_dir: str | Path, prompt: str, max_new_tokens: int = 40) -> str:
    """A short greedy sample from a causal checkpoint, or the top fill for a masked one: a smoke test of the output."""
    from transformers import pipeline

    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    if tokenizer.mask_token is not None:
        fill = pipeline("fill-mask", model=str(output_dir), device="cpu")
        return fill(f"{prompt} {tokenizer.mask_token}.", top_k=1)[0]["sequence"]
    generator = pipeline("text-generation", model=str(output_dir), device="cpu")
    return generator(prompt, max_new_tokens=max_new_tokens, do_sample=False)[0]["generated_text"]
