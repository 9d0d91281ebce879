"""Fine-tune a pretrained model of any family for text classification (SST-2, IMDB) from a recipe.

    accelerate launch --config_file accelerate_configs/cpu.yaml scripts/finetune_classification.py \
        recipes/mini_bert/sst2.yaml --model_name_or_path outputs/mini_bert-wikitext2 [--any_field value ...]

Accuracy and F1 count texts: with `long_text_strategy: windows` a long text is cut into overlapping windows, each a
training example with the text's label, and at evaluation its windows' predictions are combined into one.
"""

import logging
from typing import Any

from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from lmrecipes import data, finetuning
from lmrecipes.classification import (
    ClassificationArguments,
    bad_example_checks,
    build_compute_metrics,
    class_names,
    pooling_override,
    prepare_tokenizer,
    tokenize_for_classification,
)
from lmrecipes.errors import RecipeError, one_line_errors
from lmrecipes.finetuning import FinetuneArguments, FinetuneDataArguments
from lmrecipes.launch import use_cpu_when_torchrun_has_no_accelerator
from lmrecipes.recipe import parse_recipe
from lmrecipes.training import RecipeTrainer, RecipeTrainingArguments, start_run, train_evaluate_and_save

logger = logging.getLogger(__name__)


def main(
    finetune_args: FinetuneArguments,
    data_args: FinetuneDataArguments,
    task_args: ClassificationArguments,
    training_args: RecipeTrainingArguments,
    recipe: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Run a classification recipe end to end and return the final metrics (also in all_results.json)."""
    ###############
    # Recipe checks: what needs no data fails here, before anything is written
    ###############
    callbacks = finetuning.early_stopping(finetune_args, training_args)
    config_overrides = pooling_override(task_args.classifier_pooling, finetune_args.model_name_or_path)
    if (finished := start_run(training_args, recipe)) is not None:
        return finished  # this recipe's run in this folder is already complete

    ######
    # Data: the splits, sampled, without unusable rows; the class names come from the training split
    ######
    raw = {}
    for name, split, max_samples in (
        ("train", data_args.train_split, data_args.max_train_samples),
        ("eval", data_args.eval_split, data_args.max_eval_samples),
    ):
        dataset = data_args.load_split(split)
        if task_args.text_column not in dataset.column_names:
            raise RecipeError(
                f"split {split!r} has no column {task_args.text_column!r} (text_column); its columns are "
                f"{dataset.column_names}"
            )
        dataset = data.take_samples(dataset, max_samples, training_args.seed)
        if name == "train":
            names = class_names(dataset, task_args.label_column)
        checks = bad_example_checks(task_args.text_column, task_args.label_column, names)
        raw[name] = data.drop_bad_examples(dataset, checks, f"{name} split {split!r}")
    logger.info("%d classes: %s", len(names), names)

    ####################
    # Tokenizer and model: the pretrained folder with a new classification head
    ####################
    tokenizer = prepare_tokenizer(finetuning.load_tokenizer(finetune_args), task_args.max_seq_length)
    model = finetuning.load_for_finetuning(
        AutoModelForSequenceClassification,
        finetune_args,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: class_id for class_id, name in enumerate(names)},
        **config_overrides,
    )
    data.check_tokenizer_fits_model(tokenizer, model.config)  # an id past the embedding: IndexError at step 1
    finetuning.check_max_seq_length(task_args.max_seq_length, model.config)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    logger.info("%s: %.2fM parameters", model.config.model_type, model.num_parameters() / 1e6)

    ##############
    # Tokenization: one input per text, or overlapping windows
    ##############
    with training_args.main_process_first(desc="tokenizing"):
        train_dataset, eval_dataset = (
            tokenize_for_classification(
                raw[name],
                tokenizer,
                task_args,
                names,
                num_proc=data_args.preprocessing_num_workers,
                load_from_cache_file=not data_args.overwrite_cache,
            )
            for name in ("train", "eval")
        )
    for name, dataset in (("train", train_dataset), ("eval", eval_dataset)):
        logger.info("%s: %d texts -> %d model inputs", name, len(raw[name]), len(dataset))

    #########
    # Trainer
    #########
    windows = task_args.long_text_strategy == "windows"
    trainer = RecipeTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=build_compute_metrics(
            len(names),
            example_index=list(eval_dataset["example_index"]) if windows else None,
            combination=task_args.window_combination,
        ),
        callbacks=callbacks,
        report_perplexity=False,
    )

    ############################################
    # Train, evaluate, save, write the card, push
    ############################################
    return train_evaluate_and_save(trainer, tokenizer, recipe)


if __name__ == "__main__":
    with one_line_errors():
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
        use_cpu_when_torchrun_has_no_accelerator()  # before TrainingArguments reads the environment
        finetune_args, data_args, task_args, training_args, recipe = parse_recipe(
            (FinetuneArguments, FinetuneDataArguments, ClassificationArguments, RecipeTrainingArguments)
        )
        metrics = main(finetune_args, data_args, task_args, training_args, recipe)
        if training_args.should_save:
            print(
                f"eval accuracy {metrics['eval_accuracy']:.4f}, F1 {metrics['eval_f1']:.4f}; "
                f"model in {training_args.output_dir}"
            )
