"""Fine-tune an encoder-decoder translation model (mini_bert encoder, mini_gpt decoder) from a recipe.

    accelerate launch --config_file accelerate_configs/cpu.yaml scripts/finetune_translation.py \
        recipes/encoder_decoder/multi30k.yaml [--any_field value ...]
"""

import json
import logging
from pathlib import Path

from transformers import Seq2SeqTrainingArguments

from lmrecipes.finetuning import FinetuneDataArguments
from lmrecipes.recipe import parse_recipe
from lmrecipes.translation import (
    TRANSLATIONS_FILENAME,
    TranslationArguments,
    TranslationModelArguments,
    finetune_translation,
)


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, task_args, training_args, recipe = parse_recipe(
        (TranslationModelArguments, FinetuneDataArguments, TranslationArguments, Seq2SeqTrainingArguments)
    )
    metrics = finetune_translation(model_args, data_args, task_args, training_args, recipe)
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


if __name__ == "__main__":
    main()
