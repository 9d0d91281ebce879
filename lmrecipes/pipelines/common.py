"""What the lmrecipes pipelines share: saving a folder that `pipeline(task, model=folder)` loads back."""

from __future__ import annotations

import os
from typing import Any

from transformers.pipelines.base import Pipeline
from transformers.tokenization_utils_base import PreTrainedTokenizerBase


def save_model_and_tokenizers(
    pipe: Pipeline,
    save_directory: str | os.PathLike,
    tokenizers: dict[str, PreTrainedTokenizerBase],
    **kwargs: Any,
) -> None:
    """Save the model and tokenizers only.

    `Pipeline.save_pretrained` would also write the registered task into config.json (`custom_pipelines`) and copy
    this file next to the weights; `pipeline(task, model=folder)` then refuses to load the folder without
    trust_remote_code, even where lmrecipes registers the task itself. lmrecipes is needed to run these pipelines
    anyway (they use lmrecipes.question_answering), so the folder holds what `pipeline()` loads: model and tokenizer(s).
    """
    if os.path.isfile(save_directory):
        raise ValueError(f"save_pretrained needs a directory, but {save_directory} is a file.")
    pipe.model.save_pretrained(save_directory, **kwargs)
    for subfolder, tokenizer in tokenizers.items():
        tokenizer.save_pretrained(os.path.join(save_directory, subfolder), **kwargs)
