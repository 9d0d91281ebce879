"""lmrecipes: Hugging Face-native recipes to pretrain and fine-tune small language models.

Importing the package registers the `lstm_lm`, `mini_bert` and `mini_gpt` families with transformers' Auto classes.
"""

from lmrecipes.registry import FAMILIES, complete_auto_map, register_families

__version__ = "0.1.0"

register_families()

__all__ = ["FAMILIES", "__version__", "complete_auto_map", "register_families"]
