"""chrF (and chrF++): character n-gram F-score, computed with sacreBLEU.

Popović (2015), "chrF: character n-gram F-score for automatic MT evaluation"; chrF++ (word_order=2) adds word
n-grams (Popović, 2017). Corpus-level, in 0-100, with the sacreBLEU signature of its settings. An `evaluate`
metric script shipped with lmrecipes so that it loads without the Hugging Face Hub (see
`lmrecipes.metrics.load_metric`).
"""

import datasets
import evaluate
from sacrebleu.metrics import CHRF

_CITATION = """\
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    address = "Lisbon, Portugal",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W15-3049",
    pages = "392--395",
}
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""

_DESCRIPTION = "Corpus chrF / chrF++ (0-100) with sacrebleu.metrics.CHRF, plus its signature."

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): detokenized system outputs.
    references (list of list of str, or list of str): the references of each prediction; every prediction
        must have the same number of references.
    char_order (int, default 6), word_order (int, default 0; 2 gives chrF++), beta (int, default 2),
    lowercase (bool, default False), whitespace (bool, default False), eps_smoothing (bool, default False):
        as in sacrebleu.metrics.CHRF.
Returns:
    score (float): chrF in 0-100; char_order, word_order, beta; signature (str).
Example:
    >>> from lmrecipes.metrics import load_metric
    >>> load_metric("chrf").compute(predictions=["the cat sat"], references=[["the cat sat"]])["score"]
    100.0
"""


# Also in sacrebleu.py / chrf.py: evaluate copies each metric script alone into its module cache, so the
# scripts stay self-contained rather than importing a shared helper.
def references_by_stream(references: list) -> list[list[str]]:
    """Turn per-prediction reference lists into sacreBLEU's layout: one list per reference "stream"."""
    references = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    references_per_prediction = len(references[0])
    for row, refs in enumerate(references):
        if len(refs) != references_per_prediction:
            raise ValueError(
                f"references[{row}] has {len(refs)} references but references[0] has {references_per_prediction}: "
                "sacreBLEU needs the same number of references for every prediction."
            )
    return [[refs[i] for refs in references] for i in range(references_per_prediction)]


class Chrf(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            homepage="https://github.com/mjpost/sacreBLEU",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.List(datasets.Value("string")),
                    }
                ),
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
                ),
            ],
            codebase_urls=["https://github.com/mjpost/sacreBLEU"],
            reference_urls=["https://aclanthology.org/W15-3049", "https://aclanthology.org/W17-4770"],
        )

    def _compute(
        self,
        predictions,
        references,
        char_order=6,
        word_order=0,
        beta=2,
        lowercase=False,
        whitespace=False,
        eps_smoothing=False,
    ):
        chrf = CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        output = chrf.corpus_score(predictions, references_by_stream(references))
        return {
            "score": output.score,
            "char_order": output.char_order,
            "word_order": output.word_order,
            "beta": output.beta,
            "signature": str(chrf.get_signature()),
        }
