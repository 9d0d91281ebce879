"""Pretrain a model of any family from a recipe.

    accelerate launch --config_file accelerate_configs/cpu.yaml scripts/pretrain.py recipes/mini_gpt/tiny.yaml \
        [--any_field value ...]
"""

import logging

from transformers import TrainingArguments

from lmrecipes.data import DataArguments
from lmrecipes.modeling import ModelArguments
from lmrecipes.pretraining import pretrain, sample
from lmrecipes.recipe import parse_recipe


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, training_args, recipe = parse_recipe(
        (ModelArguments, DataArguments, TrainingArguments)
    )
    metrics = pretrain(model_args, data_args, training_args, recipe)
    if training_args.should_save:
        print(f"eval perplexity {metrics['eval_perplexity']:.2f}; model in {training_args.output_dir}")
        print("sample:", sample(training_args.output_dir, prompt="The"))


if __name__ == "__main__":
    main()
