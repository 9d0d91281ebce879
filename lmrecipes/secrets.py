"""Keep credentials out of everything lmrecipes writes: recipes, cards, logs and `training_args.bin`.

A recipe that carries a token is refused (`reject_token_fields`); what is saved or shown is scrubbed first
(`scrub_secrets`), and `hub_token` is dropped from TrainingArguments before the Trainer pickles them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import huggingface_hub

from lmrecipes.errors import RecipeError

logger = logging.getLogger(__name__)

# Keys that hold credentials. Compared on the lower-cased key; tokenizer settings such as `pad_token` or
# `eos_token` are not secrets, which is why this is a list and not a `*_token` pattern.
TOKEN_FIELD_NAMES = frozenset(
    {
        "token",
        "hub_token",
        "hf_token",
        "push_to_hub_token",
        "use_auth_token",
        "auth_token",
        "access_token",
        "api_key",
        "api_token",
        "password",
        "secret",
    }
)
# What a Hugging Face user access token looks like, to redact one pasted into a free-form value.
HF_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{20,}")
REDACTED = "<redacted>"


def is_token_field(name: str) -> bool:
    return name.lower() in TOKEN_FIELD_NAMES


def find_token_fields(config: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every token-like field with a value in a nested recipe (dicts and lists)."""
    found = []
    if isinstance(config, Mapping):
        for key, value in config.items():
            path = f"{prefix}{key}"
            if is_token_field(str(key)) and value not in (None, "", False):
                found.append(path)
            found.extend(find_token_fields(value, prefix=f"{path}."))
    elif isinstance(config, (list, tuple)):
        for index, value in enumerate(config):
            found.extend(find_token_fields(value, prefix=f"{prefix}{index}."))
    return found


def reject_token_fields(config: Any, source: str = "recipe") -> None:
    """Raise if a recipe carries a token: it would end up in saved recipes, cards or `training_args.bin`."""
    fields = find_token_fields(config)
    if fields:
        raise RecipeError(
            f"{source} sets {', '.join(fields)}: tokens are not accepted there because they would be saved with the "
            "outputs. Remove the field and set the HF_TOKEN environment variable or run `hf auth login` instead."
        )


def scrub_secrets(config: Any) -> Any:
    """A copy of a nested recipe without token-like fields, and with anything that looks like a token redacted
    (the shape of Hugging Face tokens, and the token in use, whatever its shape)."""
    live_token = huggingface_hub.get_token()

    def scrub(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: scrub(item) for key, item in value.items() if not is_token_field(str(key))}
        if isinstance(value, (list, tuple)):
            return [scrub(item) for item in value]
        if isinstance(value, str):
            if live_token and live_token in value:
                value = value.replace(live_token, REDACTED)
            return HF_TOKEN_PATTERN.sub(REDACTED, value)
        return value

    return scrub(config)


def scrub_training_args(args: Any) -> Any:
    """Clear `hub_token` on TrainingArguments in place (Trainer pickles the whole object into training_args.bin).

    Pushing still works: with `hub_token=None` the Trainer's `HfApi` calls fall back to `HF_TOKEN` or the login.
    """
    for name in ("hub_token", "push_to_hub_token"):
        if getattr(args, name, None):
            logger.warning(
                "Dropped TrainingArguments.%s so that it is not saved with the checkpoints; the token is read from "
                "HF_TOKEN or the huggingface_hub login instead.",
                name,
            )
            setattr(args, name, None)
    return args
