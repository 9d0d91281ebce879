"""Model families of lmrecipes, one folder per family in the transformers layout.

Each family folder holds `configuration_<family>.py` and `modeling_<family>.py`, which import only torch and
transformers, so that `save_pretrained` can copy them next to the weights as Hub remote code.
This folder is installed as the subpackage `lmrecipes.models` (see `[tool.setuptools]` in pyproject.toml).
"""
