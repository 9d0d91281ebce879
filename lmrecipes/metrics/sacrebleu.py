"""sacreBLEU: corpus-level BLEU on detokenized text, reported with its sacreBLEU signature.

Post (2018), "A Call for Clarity in Reporting BLEU Scores". sacreBLEU applies its own reference tokenization
(13a by default) to plain, detokenized predictions and references, so scores are comparable across papers; the
signature (e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`) records every setting that
changes the number. An `evaluate` metric script shipped with lmrecipes so that it loads without the Hugging
Face Hub (see `lmrecipes.metrics.load_metric`).
"""

import datasets
import evaluate
from sacrebleu.metrics import BLEU

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    address = "Belgium, Brussels",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""

_DESCRIPTION = "Corpus BLEU (0-100) of detokenized text with sacrebleu.metrics.BLEU, plus its signature."

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): detokenized system outputs.
    references (list of list of str, or list of str): the references of each prediction; every prediction
        must have the same number of references.
    tokenize (str, optional): sacreBLEU tokenizer ("13a" by default, "intl", "char", "none", ...).
    lowercase (bool, default False), smooth_method (str, default "exp"), smooth_value (float, optional),
    use_effective_order (bool, default False), force (bool, default False): as in sacrebleu.metrics.BLEU.
Returns:
    score (float): BLEU in 0-100; counts, totals, precisions (n-gram statistics); bp (brevity penalty);
    sys_len, ref_len (token counts); signature (str).
Example:
    >>> from lmrecipes.metrics import load_metric
    >>> sacrebleu = load_metric("sacrebleu")
    >>> sacrebleu.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])["score"]
    100.00000000000004
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


class Sacrebleu(evaluate.Metric):
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
            reference_urls=["https://www.aclweb.org/anthology/W18-6319"],
        )

    def _compute(
        self,
        predictions,
        references,
        tokenize=None,
        lowercase=False,
        smooth_method="exp",
        smooth_value=None,
        use_effective_order=False,
        force=False,
    ):
        bleu = BLEU(
            lowercase=lowercase,
            force=force,
            tokenize=tokenize,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            effective_order=use_effective_order,
        )
        output = bleu.corpus_score(predictions, references_by_stream(references))
        return {
            "score": output.score,
            "counts": output.counts,
            "totals": output.totals,
            "precisions": output.precisions,
            "bp": output.bp,
            "sys_len": output.sys_len,
            "ref_len": output.ref_len,
            "signature": str(bleu.get_signature()),
        }
