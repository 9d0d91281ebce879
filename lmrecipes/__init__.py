"""lmrecipes: Hugging Face-native recipes to pretrain and fine-tune small language models.

Importing the package registers the `lstm_lm`, `mini_bert` and `mini_gpt` families with transformers' Auto classes,
and the `extractive-question-answering` and `seq2seq-translation` pipelines (transformers 5.x removed its own
question-answering and translation pipelines).
"""

from lmrecipes.families import FAMILIES, complete_auto_map, register_families
from lmrecipes.pipelines import register_pipelines

__version__ = "0.1.0"

register_families()
register_pipelines()

__all__ = ["FAMILIES", "__version__", "complete_auto_map", "register_families", "register_pipelines"]
