"""Fine-tune a pretrained model of any family for text classification (SST-2, IMDB) from a recipe.

    accelerate launch --config_file accelerate_configs/cpu.yaml scripts/finetune_classification.py \
        recipes/mini_bert/sst2.yaml --model_name_or_path outputs/mini_bert-wikitext2 [--any_field value ...]
"""

import logging

from transformers import TrainingArguments

from lmrecipes.classification import ClassificationArguments, finetune_classification
from lmrecipes.finetuning import FinetuneArguments, FinetuneDataArguments
from lmrecipes.recipe import parse_recipe


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    finetune_args, data_args, task_args, training_args, recipe = parse_recipe(
        (FinetuneArguments, FinetuneDataArguments, ClassificationArguments, TrainingArguments)
    )
    metrics = finetune_classification(finetune_args, data_args, task_args, training_args, recipe)
    if training_args.should_save:
        print(
            f"eval accuracy {metrics['eval_accuracy']:.4f}, F1 {metrics['eval_f1']:.4f}; "
            f"model in {training_args.output_dir}"
        )


if __name__ == "__main__":
    main()
