"""Pretrain a model of any family from a recipe: causal LM for lstm_lm and mini_gpt, masked LM for mini_bert.

    accelerate launch --config_file accelerate_configs/cpu.yaml scripts/pretrain.py recipes/mini_gpt/tiny.yaml \
        [--any_field value ...]

The output folder holds the model, its tokenizer, all_results.json and a model card, and loads with from_pretrained.
"""

import itertools
import logging
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from lmrecipes import data
from lmrecipes.data import DataArguments
from lmrecipes.errors import RecipeError, one_line_errors
from lmrecipes.evaluation import published_metrics
from lmrecipes.families import FAMILIES
from lmrecipes.launch import use_cpu_when_torchrun_has_no_accelerator
from lmrecipes.modeling import (
    ModelArguments,
    build_config,
    build_pretraining_model,
    generate_sample,
    load_pretrained,
    max_positions,
)
from lmrecipes.recipe import parse_recipe
from lmrecipes.tbptt import TBPTTTrainer, check_truncated_bptt_arguments
from lmrecipes.tokenization import reuse_or_train_tokenizer, train_tokenizer
from lmrecipes.training import (
    RecipeTrainer,
    RecipeTrainingArguments,
    record_recipe,
    start_run,
    train_evaluate_and_save,
)

logger = logging.getLogger(__name__)


def main(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: RecipeTrainingArguments,
    recipe: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Run a pretraining recipe end to end and return the final metrics (also in all_results.json)."""
    ###############
    # Recipe checks: what needs no data fails here, before anything is written
    ###############
    if data_args.streaming and data_args.carves_validation:
        raise RecipeError(
            "validation_file: a streamed train_file cannot lend rows to validation, name a validation file"
        )
    if data_args.streaming and training_args.max_steps <= 0:
        raise RecipeError("max_steps: a streamed corpus has no length, so the recipe must set max_steps > 0")
    if model_args.truncated_bptt:
        check_truncated_bptt_arguments(model_args.model_type, data_args.streaming, training_args)
    if not model_args.model_name_or_path:  # sizes, heads and positions, before a tokenizer is trained
        positions = max_positions(build_config(model_args, tokenizer=None))
        data.check_length_fits("block_size", data_args.block_size, positions, hint=data.BLOCK_SIZE_HINT)
    if (finished := start_run(training_args, recipe)) is not None:
        return finished  # this recipe's run in this folder is already complete
    family = FAMILIES[model_args.model_type]

    ###########
    # Tokenizer: the recipe's, else the one an interrupted run saved, else one trained on the train split
    ###########
    output_dir = Path(training_args.output_dir)
    if model_args.tokenizer_name_or_path or model_args.model_name_or_path:
        tokenizer_field = (
            "tokenizer_name_or_path" if model_args.tokenizer_name_or_path else "model_name_or_path"
        )
        tokenizer = load_pretrained(AutoTokenizer, getattr(model_args, tokenizer_field), tokenizer_field)
    else:

        def train_and_save() -> None:
            record_recipe(training_args, recipe)  # the tokenizer belongs to this recipe
            train_split = data.load_text_dataset(data_args, data_args.train_split)
            trained = train_tokenizer(
                itertools.chain.from_iterable(data.batch_iterator(train_split, data_args.text_column)),
                kind=model_args.tokenizer_kind,
                vocab_size=model_args.tokenizer_vocab_size,
                model_max_length=data_args.block_size,
            )
            trained.save_pretrained(output_dir)
            logger.info("trained a %d-token tokenizer, saved to %s", len(trained), output_dir)

        reuse_or_train_tokenizer(output_dir, training_args, train_and_save)
        tokenizer = AutoTokenizer.from_pretrained(output_dir)

    #######
    # Model
    #######
    model = build_pretraining_model(model_args, tokenizer)
    data.check_tokenizer_fits_model(tokenizer, model.config)
    logger.info(
        "%s: %.2fM parameters, %s objective",
        model_args.model_type,
        model.num_parameters() / 1e6,
        family.objective,
    )

    ######
    # Data: tokenized and packed into blocks
    ######
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

    #########
    # Trainer
    #########
    trainer_class = TBPTTTrainer if model_args.truncated_bptt else RecipeTrainer
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=data.lm_data_collator(tokenizer, family.objective),
    )

    ############################################
    # Train, evaluate, save, write the card, push
    ############################################
    def published(trainer) -> dict[str, float]:
        # The whole split in the units papers publish (word perplexity, bits per character), whatever the
        # tokenizer; skipped when the recipe evaluates on a sample only.
        if data_args.max_eval_samples is not None:
            return {}
        return published_metrics(trainer.model, tokenizer, data_args)

    return train_evaluate_and_save(trainer, tokenizer, recipe, extra_eval_metrics=published)


def sample(output_dir: str | Path, prompt: str, max_new_tokens: int = 60, seed: int = 0) -> str:
    """A short sample from a causal checkpoint, or the top fill for a masked one: a smoke test of the output folder.
    The causal sample fits the position table: a finished training must never fail on its sample."""
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    if tokenizer.mask_token is not None:
        fill = pipeline("fill-mask", model=str(output_dir), device="cpu")
        return fill(f"{prompt} {tokenizer.mask_token}.", top_k=1)[0]["sequence"]
    model = AutoModelForCausalLM.from_pretrained(output_dir)
    return generate_sample(model, tokenizer, prompt, max_new_tokens, seed=seed)


if __name__ == "__main__":
    with one_line_errors():
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
        use_cpu_when_torchrun_has_no_accelerator()  # before TrainingArguments reads the environment
        model_args, data_args, training_args, recipe = parse_recipe(
            (ModelArguments, DataArguments, RecipeTrainingArguments)
        )
        metrics = main(model_args, data_args, training_args, recipe)
        if training_args.should_save:
            print(f"eval perplexity {metrics['eval_perplexity']:.2f}; model in {training_args.output_dir}")
            print("sample:", sample(training_args.output_dir, prompt="The"))
