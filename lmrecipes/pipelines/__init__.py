"""transformers pipelines for extractive question answering and encoder-decoder translation.

transformers 5 removed its "question-answering", "translation" and "text2text-generation" pipelines (see
`REMOVED_TASKS` in transformers/pipelines/__init__.py) and refuses those task names. The ecosystem's way to add a task
back is a custom pipeline registered with `PIPELINE_REGISTRY`; `register_pipelines()` (run when lmrecipes is
imported) registers "extractive-question-answering" and "seq2seq-translation", names the removed-task check lets
through.
"""

from __future__ import annotations

from transformers import AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM
from transformers.pipelines import PIPELINE_REGISTRY

from lmrecipes.pipelines.question_answering import (
    QUESTION_ANSWERING_TASK,
    ExtractiveQuestionAnsweringPipeline,
)
from lmrecipes.pipelines.translation import TRANSLATION_TASK, Seq2SeqTranslationPipeline

PIPELINES = {
    QUESTION_ANSWERING_TASK: (ExtractiveQuestionAnsweringPipeline, AutoModelForQuestionAnswering),
    TRANSLATION_TASK: (Seq2SeqTranslationPipeline, AutoModelForSeq2SeqLM),
}


def register_pipelines() -> None:
    """Register the tasks with transformers' PIPELINE_REGISTRY, so `pipeline(task, model=...)` builds them.

    Safe to call more than once: a task already registered with the same class is left as it is (registering again
    would only log an "overwriting" warning).
    """
    for task, (pipeline_class, auto_model_class) in PIPELINES.items():
        registered = PIPELINE_REGISTRY.supported_tasks.get(task)
        if registered is not None and registered["impl"] is pipeline_class:
            continue
        PIPELINE_REGISTRY.register_pipeline(
            task, pipeline_class=pipeline_class, pt_model=auto_model_class, type="text"
        )
