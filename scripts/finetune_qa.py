"""Fine-tune a pretrained mini_bert for extractive question answering (SQuAD v1.1) from a recipe.

    accelerate launch --config_file accelerate_configs/cpu.yaml scripts/finetune_qa.py \
        recipes/mini_bert/squad.yaml --model_name_or_path outputs/mini_bert-wikitext2 [--any_field value ...]
"""

import logging

from transformers import TrainingArguments

from lmrecipes.finetuning import FinetuneArguments, FinetuneDataArguments
from lmrecipes.question_answering import QuestionAnsweringArguments, finetune_question_answering
from lmrecipes.recipe import parse_recipe


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    finetune_args, data_args, task_args, training_args, recipe = parse_recipe(
        (FinetuneArguments, FinetuneDataArguments, QuestionAnsweringArguments, TrainingArguments)
    )
    metrics = finetune_question_answering(finetune_args, data_args, task_args, training_args, recipe)
    if training_args.should_save:
        print(
            f"eval exact match {metrics['eval_exact_match']:.2f}, F1 {metrics['eval_f1']:.2f}; "
            f"model in {training_args.output_dir}"
        )


if __name__ == "__main__":
    main()
