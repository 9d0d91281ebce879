"""Scoring translations: detokenized beam-search output against the raw references (sacreBLEU, chrF), the
Seq2SeqTrainer that evaluates in row order, and the hypotheses written out for rescoring."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import (
    EvalPrediction,
    PreTrainedTokenizerBase,
)

from lmrecipes.metrics import load_metric
from lmrecipes.training import RecipeSeq2SeqTrainer
from lmrecipes.translation.processing import target_label_ids

logger = logging.getLogger(__name__)

TRANSLATIONS_FILENAME = "{split}_translations.jsonl"
# Plain text, one detokenized sentence a line, for the official tools: `sacrebleu test_references.txt -i
# test_hypotheses.txt` gives the recipe's test_bleu.
HYPOTHESES_FILENAME = "{split}_hypotheses.txt"
REFERENCES_FILENAME = "{split}_references.txt"


def generated_token_ids(token_ids: np.ndarray, eos_token_id: int) -> list[list[int]]:
    """The generated tokens of each row of generate() outputs, [decoder start, tokens..., eos, padding]: the start
    token dropped and the row cut at its first eos.

    What follows eos is padding, which the Seq2SeqTrainer fills with the *source* tokenizer's pad id (a real token of
    the target vocabulary when the two tokenizers differ) and with -100 between batches.
    """
    rows = []
    for row in np.asarray(token_ids):
        ids = [int(token) for token in row[1:]]
        if eos_token_id in ids:
            ids = ids[: ids.index(eos_token_id)]
        rows.append([token for token in ids if token >= 0])
    return rows


def decode_generated(token_ids: np.ndarray, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Detokenized text of generate() outputs, decoded with skip_special_tokens and stripped, as the pipeline does."""
    return [
        tokenizer.decode(ids, skip_special_tokens=True).strip()
        for ids in generated_token_ids(token_ids, tokenizer.eos_token_id)
    ]


class TranslationScorer:
    """compute_metrics for the Seq2SeqTrainer: sacreBLEU and chrF of the generated text against raw references.

    The Trainer hands over token ids only, so the references (raw strings, in the order of the evaluated dataset,
    which the evaluation keeps) are given here. The decoded predictions of the last call stay in `predictions`.
    """

    def __init__(self, target_tokenizer: PreTrainedTokenizerBase, references: Sequence[str]) -> None:
        self.tokenizer = target_tokenizer
        self.references = list(references)
        self.reference_labels = target_label_ids(target_tokenizer, self.references)
        self.bleu = load_metric("sacrebleu")
        self.chrf = load_metric("chrf")
        self.predictions: list[str] = []
        self.signatures: dict[str, str] = {}

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        generated = generated_token_ids(prediction.predictions, self.tokenizer.eos_token_id)
        predictions = [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]
        self.check_order(prediction.label_ids, len(predictions))
        self.predictions = predictions
        references = [[reference] for reference in self.references]
        bleu = self.bleu.compute(predictions=predictions, references=references)
        chrf = self.chrf.compute(predictions=predictions, references=references)
        self.signatures = {"bleu_signature": bleu["signature"], "chrf_signature": chrf["signature"]}
        return {
            "bleu": bleu["score"],
            "chrf": chrf["score"],
            "gen_len": float(np.mean([len(ids) for ids in generated])),  # tokens before eos
        }

    def check_order(self, label_ids: np.ndarray | None, num_predictions: int) -> None:
        """Fail unless the evaluated rows are the references, in the same order: their labels must match.

        The Trainer returns predictions in its evaluation order with no row indices, so a reordering (such as the
        length-grouped evaluation batches of train_sampling_strategy: group_by_length) would otherwise silently
        score each translation against another sentence's reference.
        """
        if num_predictions != len(self.references):
            raise ValueError(
                f"{num_predictions} translations for {len(self.references)} references: the evaluated dataset is "
                "not the one this scorer was built for"
            )
        if label_ids is None:
            return
        for row, (labels, expected) in enumerate(
            zip(np.asarray(label_ids), self.reference_labels, strict=True)
        ):
            # Labels come back padded (-100, or the source tokenizer's pad id): compare their first tokens.
            if labels[: len(expected)].tolist() != expected:
                raise ValueError(
                    f"evaluation row {row} does not hold the reference {self.references[row]!r}: the evaluation "
                    "visited the rows in another order than the dataset's, so the scores would be wrong"
                )


class TranslationTrainer(RecipeSeq2SeqTrainer):
    """RecipeSeq2SeqTrainer that gathers one translation per evaluated row (the rows are evaluated in dataset order
    by every recipe trainer, see RecipeOptionsMixin._get_eval_sampler)."""

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        # Seq2SeqTrainer.evaluate/predict gather with accelerator.gather, for generations with
        # num_return_sequences > 1 (transformers PR #27025). That keeps the rows accelerate repeats to even out the
        # last batch across processes: with 2 processes the scorer got more translations than references. One
        # translation per row here, so gather_for_metrics, which drops the repeats, is right.
        self.gather_function = self.accelerator.gather_for_metrics
        return super().evaluation_loop(*args, **kwargs)


def write_translations(
    output_dir: Path,
    split: str,
    sources: Sequence[str],
    references: Sequence[str],
    predictions: Sequence[str],
) -> None:
    """Each scored row as JSON lines (source, reference, prediction), and the hypotheses and references as
    plain-text files, one sentence a line, that sacreBLEU's command line scores as the recipe did."""
    with open(output_dir / TRANSLATIONS_FILENAME.format(split=split), "w", encoding="utf-8") as handle:
        for source, reference, prediction in zip(sources, references, predictions, strict=True):
            line = {"source": source, "reference": reference, "prediction": prediction}
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    for filename, texts in ((HYPOTHESES_FILENAME, predictions), (REFERENCES_FILENAME, references)):
        # A line break inside a sentence would shift every later line against its reference.
        lines = (" ".join(text.split("\n")) for text in texts)
        (output_dir / filename.format(split=split)).write_text(
            "".join(f"{line}\n" for line in lines), "utf-8"
        )
