"""Score a causal checkpoint on a whole split in the units papers publish (word perplexity, bits per character).

    python scripts/evaluate_lm.py outputs/mini_gpt-tiny --dataset_name Salesforce/wikitext \
        --dataset_config_name wikitext-2-v1 --split test

Writes `<output folder>/lm_eval_<dataset>_<split>.json`. See lmrecipes/evaluation.py for the exact conventions.
"""

import logging
import sys

from lmrecipes.errors import one_line_errors
from lmrecipes.evaluation import evaluate_checkpoint, parse_evaluation_args


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    results, path = evaluate_checkpoint(parse_evaluation_args(sys.argv[1:]))
    if results["unit"] == "word":
        published = f"word perplexity {results['word_ppl']:.2f}"
    elif results["unit"] == "char":
        published = f"{results['bpc']:.4f} bits per character"
    else:
        published = "no published unit"
    print(
        f"{' '.join(filter(None, [results['dataset_name'], results['dataset_config_name'], results['split']]))}: "
        f"{published}; token perplexity {results['token_ppl']:.2f} "
        f"over {results['num_tokens']:,} tokens, {results['num_words']:,} words + {results['num_lines']:,} lines, "
        f"{results['num_chars']:,} characters ({results['seconds']:.1f} s)"
    )
    print(f"written to {path}")


if __name__ == "__main__":
    with one_line_errors():
        main()
