"""Pretraining: train a tokenizer-equipped model of any family from scratch on a corpus, with the Trainer.

`scripts/pretrain.py` parses a recipe and calls `pretrain`. Causal LM for `lstm_lm` and `mini_gpt`, masked LM for
`mini_bert`. The output folder holds the model, its tokenizer, `all_results.json` and a model card, and loads with
`from_pretrained`.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, TrainingArguments

from lmrecipes import data
from lmrecipes.evaluation import published_metrics
from lmrecipes.families import FAMILIES
from lmrecipes.modeling import ModelArguments, build_pretraining_model, max_positions
from lmrecipes.tbptt import TBPTTTrainer, check_truncated_bptt_arguments
from lmrecipes.tokenization import train_tokenizer
from lmrecipes.training import LMTrainer, start_run, train_evaluate_and_save

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
            batches = data.batch_iterator(
                data.load_text_dataset(data_args, data_args.train_split), data_args.text_column
            )
            tokenizer = train_tokenizer(
                itertools.chain.from_iterable(batches),
                kind=FAMILIES[model_args.model_type].tokenizer_kind,
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
    start_run(training_args, recipe)
    objective = FAMILIES[model_args.model_type].objective

    # Everything that can be wrong with the inputs is checked here, before the first step.
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("max_steps: a streamed corpus has no length, so the recipe must set max_steps > 0")
    if model_args.truncated_bptt:
        check_truncated_bptt_arguments(model_args.model_type, data_args.streaming, training_args)
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

    # The whole split in the units papers publish (word perplexity, bits per character), whatever the tokenizer;
    # skipped when the recipe evaluates on a sample only.
    def published(trainer) -> dict[str, float]:
        return (
            published_metrics(trainer.model, tokenizer, data_args)
            if data_args.max_eval_samples is None
            else {}
        )

    return train_evaluate_and_save(trainer, tokenizer, recipe, extra_eval_metrics=published)


@torch.no_grad()
def sample(output_dir: str | Path, prompt: str, max_new_tokens: int = 60, seed: int = 0) -> str:
    """A short sample from a causal checkpoint (top-k sampling, seeded: greedy decoding of a small model loops on one
    phrase), or the top fill for a masked one: a smoke test of the output folder."""
    from transformers import pipeline

    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    if tokenizer.mask_token is not None:
        fill = pipeline("fill-mask", model=str(output_dir), device="cpu")
        return fill(f"{prompt} {tokenizer.mask_token}.", top_k=1)[0]["sequence"]
    generator = pipeline("text-generation", model=str(output_dir), device="cpu")
    torch.manual_seed(seed)
    return generator(prompt, max_new_tokens=max_new_tokens, do_sample=True, top_k=40, temperature=0.8)[0][
        "generated_text"
    ]
