"""Fine-tune a pretrained mini_bert for extractive question answering (SQuAD v1.1) from a recipe.

    accelerate launch --config_file accelerate_configs/cpu.yaml scripts/finetune_qa.py \
        recipes/mini_bert/squad.yaml --model_name_or_path outputs/mini_bert-wikitext2 [--any_field value ...]

Contexts are cut into overlapping windows; at evaluation the best span over a question's windows is its answer,
scored with the official SQuAD v1.1 exact match and F1; the answers are also written to predictions.json (question
id -> answer text), the file the official evaluate-v1.1.py script reads.
"""

import logging
from pathlib import Path
from typing import Any

from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding

from lmrecipes import data, finetuning
from lmrecipes.errors import one_line_errors
from lmrecipes.finetuning import FinetuneArguments, FinetuneDataArguments
from lmrecipes.launch import use_cpu_when_torchrun_has_no_accelerator
from lmrecipes.question_answering import (
    POSTPROCESSING_COLUMNS,
    PREDICTIONS_FILENAME,
    QuestionAnsweringArguments,
    SquadScorer,
    load_squad_split,
    prepare_train_features,
    prepare_validation_features,
    write_predictions,
)
from lmrecipes.recipe import parse_recipe
from lmrecipes.training import RecipeTrainer, RecipeTrainingArguments, start_run, train_evaluate_and_save

logger = logging.getLogger(__name__)


def main(
    finetune_args: FinetuneArguments,
    data_args: FinetuneDataArguments,
    task_args: QuestionAnsweringArguments,
    training_args: RecipeTrainingArguments,
    recipe: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Run an extractive QA recipe end to end and return the final metrics (also in all_results.json)."""
    ###############
    # Recipe checks: what needs no data fails here, before anything is written
    ###############
    callbacks = finetuning.early_stopping(finetune_args, training_args)
    if (finished := start_run(training_args, recipe)) is not None:
        return finished  # this recipe's run in this folder is already complete

    ####################
    # Tokenizer and model: the pretrained folder with a new span-prediction head
    ####################
    tokenizer = finetuning.load_tokenizer(finetune_args)
    # Saved with the model: the extractive-question-answering pipeline then cuts windows as training did.
    tokenizer.model_max_length = task_args.max_seq_length
    model = finetuning.load_for_finetuning(AutoModelForQuestionAnswering, finetune_args)
    data.check_tokenizer_fits_model(tokenizer, model.config)  # an id past the embedding: IndexError at step 1
    finetuning.check_max_seq_length(task_args.max_seq_length, model.config)
    logger.info("%s: %.2fM parameters", model.config.model_type, model.num_parameters() / 1e6)

    ######
    # Data: SQuAD rows without the unusable ones, cut into windows
    ######
    seed = training_args.seed
    train_examples = load_squad_split(
        data_args, data_args.train_split, tokenizer, task_args, data_args.max_train_samples, seed
    )
    eval_examples = load_squad_split(
        data_args, data_args.eval_split, tokenizer, task_args, data_args.max_eval_samples, seed
    )
    window_args = {
        "tokenizer": tokenizer,
        "max_seq_length": task_args.max_seq_length,
        "doc_stride": task_args.doc_stride,
        "pad_to_max_length": task_args.pad_to_max_length,
    }
    map_args = {
        "batched": True,
        "num_proc": data_args.preprocessing_num_workers,
        "load_from_cache_file": not data_args.overwrite_cache,
    }
    with training_args.main_process_first(desc="cutting contexts into windows"):
        train_features = train_examples.map(
            prepare_train_features,
            fn_kwargs=window_args,
            remove_columns=train_examples.column_names,
            desc="Training windows",
            **map_args,
        )
        eval_features = eval_examples.map(
            prepare_validation_features,
            fn_kwargs=window_args,
            remove_columns=eval_examples.column_names,
            desc="Evaluation windows",
            **map_args,
        )
    logger.info(
        "train: %d questions -> %d windows; eval: %d questions -> %d windows",
        len(train_examples),
        len(train_features),
        len(eval_examples),
        len(eval_features),
    )

    #########
    # Trainer: compute_metrics decodes the answers from the windows' logits
    #########
    scorer = SquadScorer(eval_examples, eval_features, task_args)
    trainer = RecipeTrainer(
        model=model,
        args=training_args,
        train_dataset=train_features,
        eval_dataset=eval_features.remove_columns(list(POSTPROCESSING_COLUMNS)),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=scorer,
        callbacks=callbacks,
        report_perplexity=False,
    )

    ############################################
    # Train, evaluate, save, write the card, push
    ############################################
    def save_predictions(trainer, metrics: dict[str, float]) -> dict[str, float]:
        if training_args.should_save:  # the final evaluation's answers, for the official scoring script
            write_predictions(Path(training_args.output_dir) / PREDICTIONS_FILENAME, scorer.predictions)
        return {}

    return train_evaluate_and_save(trainer, tokenizer, recipe, save_task_outputs=save_predictions)


if __name__ == "__main__":
    with one_line_errors():
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
        use_cpu_when_torchrun_has_no_accelerator()  # before TrainingArguments reads the environment
        finetune_args, data_args, task_args, training_args, recipe = parse_recipe(
            (FinetuneArguments, FinetuneDataArguments, QuestionAnsweringArguments, RecipeTrainingArguments)
        )
        metrics = main(finetune_args, data_args, task_args, training_args, recipe)
        if training_args.should_save:
            print(
                f"eval exact match {metrics['eval_exact_match']:.2f}, F1 {metrics['eval_f1']:.2f}; "
                f"model in {training_args.output_dir}"
            )
