"""Fine-tune an encoder-decoder translation model (mini_bert encoder, mini_gpt decoder) from a recipe.

    accelerate launch --config_file accelerate_configs/cpu.yaml scripts/finetune_translation.py \
        recipes/encoder_decoder/multi30k.yaml [--any_field value ...]

Warm-started from two pretrained folders, or built from scratch with tokenizers trained on the pairs (README,
"Translation"); scored with sacreBLEU and chrF on detokenized beam-search output against the raw references.
"""

import json
import logging
from pathlib import Path
from typing import Any

from transformers import DataCollatorForSeq2Seq
from transformers.dynamic_module_utils import custom_object_save

from lmrecipes import data, finetuning
from lmrecipes.errors import one_line_errors
from lmrecipes.finetuning import FinetuneDataArguments
from lmrecipes.launch import use_cpu_when_torchrun_has_no_accelerator
from lmrecipes.recipe import parse_recipe
from lmrecipes.training import (
    RecipeSeq2SeqTrainingArguments,
    record_recipe,
    start_run,
    train_evaluate_and_save,
)
from lmrecipes.translation.modeling import (
    KeepTargetSpecialTokens,
    build_translation_model,
    check_lengths_fit,
    generation_settings,
    load_tokenizers,
    save_tokenizers,
    set_generation_config,
)
from lmrecipes.translation.processing import (
    TranslationArguments,
    TranslationModelArguments,
    load_pairs,
    prepare_split,
)
from lmrecipes.translation.scoring import (
    TRANSLATIONS_FILENAME,
    TranslationScorer,
    TranslationTrainer,
    write_translations,
)

logger = logging.getLogger(__name__)


def main(
    model_args: TranslationModelArguments,
    data_args: FinetuneDataArguments,
    task_args: TranslationArguments,
    training_args: RecipeSeq2SeqTrainingArguments,
    recipe: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Run a translation recipe end to end and return the final metrics (also in all_results.json)."""
    ###############
    # Recipe checks: what needs no data fails here, before anything is written
    ###############
    callbacks = finetuning.early_stopping(model_args, training_args)
    num_beams, max_length = generation_settings(training_args, task_args)
    if (finished := start_run(training_args, recipe)) is not None:
        return finished  # this recipe's run in this folder is already complete
    output_dir = Path(training_args.output_dir)

    ######
    # Data: sampled pairs of each split (the test split with do_predict)
    ######
    splits = {"train": data_args.train_split, "eval": data_args.eval_split}
    if training_args.do_predict:
        splits["test"] = task_args.test_split
    max_samples = {
        "train": data_args.max_train_samples,
        "eval": data_args.max_eval_samples,
        "test": task_args.max_test_samples,
    }
    raw = {
        name: data.take_samples(
            load_pairs(data_args, task_args, split), max_samples[name], training_args.seed
        )
        for name, split in splits.items()
    }

    ####################
    # Tokenizers and model: the pretrained folders' (warm start), or new ones trained on the pairs
    ####################
    record_recipe(training_args, recipe)  # new tokenizers belong to this recipe
    source_tokenizer, target_tokenizer = load_tokenizers(model_args, task_args, training_args, raw["train"])
    model = build_translation_model(
        model_args,
        source_tokenizer,
        target_tokenizer,
        max_source_positions=task_args.max_source_length,
        max_target_positions=max(task_args.max_target_length, max_length - 1),
    )
    check_lengths_fit(model, task_args, max_length)
    data.check_tokenizer_fits_model(source_tokenizer, model.config.encoder)
    data.check_tokenizer_fits_model(target_tokenizer, model.config.decoder)
    set_generation_config(model, target_tokenizer, num_beams=num_beams, max_length=max_length)

    ##############
    # Tokenization: source and target ids, unusable pairs dropped with one summary line per split
    ##############
    prepared = {}
    with training_args.main_process_first(desc="tokenizing"):
        for name, split in splits.items():
            prepared[name] = prepare_split(
                raw[name],
                source_tokenizer,
                target_tokenizer,
                task_args,
                data_args,
                description=f"{name} split {split!r}",
            )
    logger.info(
        "%s -> %s: %.2fM parameters; %s pairs; decoding with %d beams up to %d tokens",
        model.config.encoder.model_type,
        model.config.decoder.model_type,
        model.num_parameters() / 1e6,
        ", ".join(f"{name} {len(inputs)}" for name, (inputs, _, _) in prepared.items()),
        num_beams,
        max_length,
    )

    #########
    # Trainer: beam search at evaluation, scored against the raw reference strings
    #########
    eval_inputs, eval_sources, eval_references = prepared["eval"]
    eval_scorer = TranslationScorer(target_tokenizer, eval_references)
    trainer = TranslationTrainer(
        model=model,
        args=training_args,
        train_dataset=prepared["train"][0],
        eval_dataset=eval_inputs,
        processing_class=source_tokenizer,
        # With `model`, the collator builds decoder_input_ids from the labels itself, so they are there even when
        # label smoothing makes the Trainer take the labels out of the model's inputs.
        data_collator=DataCollatorForSeq2Seq(source_tokenizer, model=model, label_pad_token_id=-100),
        compute_metrics=eval_scorer,
        callbacks=[KeepTargetSpecialTokens(target_tokenizer), *callbacks],
    )

    #######################################################################
    # After the evaluation: the test split, then everything a run leaves
    #######################################################################
    def score_test_and_save_outputs(trainer, metrics: dict[str, float]) -> dict[str, float]:
        results = {
            "eval": {**metrics, **{f"eval_{key}": value for key, value in eval_scorer.signatures.items()}}
        }
        translations = {"eval": (eval_sources, eval_references, eval_scorer.predictions)}
        test_metrics = {}
        if training_args.do_predict:
            test_inputs, test_sources, test_references = prepared["test"]
            trainer.compute_metrics = test_scorer = TranslationScorer(target_tokenizer, test_references)
            test_metrics = trainer.predict(test_inputs, metric_key_prefix="test").metrics
            trainer.log_metrics("test", test_metrics)
            signatures = {f"test_{key}": value for key, value in test_scorer.signatures.items()}
            results["test"] = {**test_metrics, **signatures}
            translations["test"] = (test_sources, test_references, test_scorer.predictions)
        if training_args.should_save:
            # Scores with their sacreBLEU signatures, both tokenizers, the families' code (README, "Translation":
            # why trust_remote_code needs more), and each scored source, reference and hypothesis.
            for split, split_metrics in results.items():
                trainer.save_metrics(
                    split, {k: v for k, v in split_metrics.items() if k.startswith(f"{split}_")}
                )
            save_tokenizers(output_dir, source_tokenizer, target_tokenizer)
            custom_object_save(model.encoder, output_dir)
            custom_object_save(model.decoder, output_dir)
            for split, (sources, references, predictions) in translations.items():
                write_translations(output_dir, split, sources, references, predictions)
        return test_metrics

    ###############################################
    # Train, evaluate, save, write the card, push
    ###############################################
    return train_evaluate_and_save(
        trainer,
        source_tokenizer,
        recipe,
        save_task_outputs=score_test_and_save_outputs,
        card_tags=["translation"],
    )


if __name__ == "__main__":
    with one_line_errors():
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
        use_cpu_when_torchrun_has_no_accelerator()  # before TrainingArguments reads the environment
        model_args, data_args, task_args, training_args, recipe = parse_recipe(
            (
                TranslationModelArguments,
                FinetuneDataArguments,
                TranslationArguments,
                RecipeSeq2SeqTrainingArguments,
            )
        )
        metrics = main(model_args, data_args, task_args, training_args, recipe)
        if training_args.should_save:
            scores = [f"eval BLEU {metrics['eval_bleu']:.2f}, chrF {metrics['eval_chrf']:.2f}"]
            if "test_bleu" in metrics:
                scores.append(f"test BLEU {metrics['test_bleu']:.2f}, chrF {metrics['test_chrf']:.2f}")
            print(f"{'; '.join(scores)}; model in {training_args.output_dir}")
            translations = Path(training_args.output_dir) / TRANSLATIONS_FILENAME.format(split="eval")
            with open(translations, encoding="utf-8") as handle:
                example = json.loads(handle.readline())
            print(f"source:     {example['source']}")
            print(f"reference:  {example['reference']}")
            print(f"prediction: {example['prediction']}")
