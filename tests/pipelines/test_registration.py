"""`import lmrecipes` registers the two custom pipeline tasks with transformers, once."""

from __future__ import annotations

import importlib
import logging

from transformers.pipelines import PIPELINE_REGISTRY, check_task

import lmrecipes
from lmrecipes.pipelines import register_pipelines
from lmrecipes.pipelines.question_answering import (
    QUESTION_ANSWERING_TASK,
    ExtractiveQuestionAnsweringPipeline,
)
from lmrecipes.pipelines.translation import TRANSLATION_TASK, Seq2SeqTranslationPipeline

register_pipelines()  # idempotent; `import lmrecipes` does it too (checked below)


def test_import_lmrecipes_registers_both_tasks():
    removed = {
        task: PIPELINE_REGISTRY.supported_tasks.pop(task)
        for task in (QUESTION_ANSWERING_TASK, TRANSLATION_TASK)
    }
    try:
        importlib.reload(lmrecipes)
        assert check_task(QUESTION_ANSWERING_TASK)[1]["impl"] is ExtractiveQuestionAnsweringPipeline
        assert check_task(TRANSLATION_TASK)[1]["impl"] is Seq2SeqTranslationPipeline
    finally:
        PIPELINE_REGISTRY.supported_tasks.update(removed)


def test_register_pipelines_twice_changes_nothing_and_warns_nothing(caplog):
    before = {
        task: PIPELINE_REGISTRY.supported_tasks[task] for task in (QUESTION_ANSWERING_TASK, TRANSLATION_TASK)
    }
    with caplog.at_level(logging.WARNING):
        register_pipelines()
    assert not [record for record in caplog.records if "already registered" in record.getMessage()]
    for task, entry in before.items():
        assert PIPELINE_REGISTRY.supported_tasks[task] is entry
