"""Push a training output folder, or one of its checkpoint-* folders, to the Hugging Face Hub.

python scripts/push_to_hub.py outputs/mini_gpt-tiny your-name/mini-gpt-tiny [--private]
python scripts/push_to_hub.py outputs/mini_gpt-tiny/checkpoint-500 your-name/mini-gpt-tiny-step500

The token comes from the HF_TOKEN environment variable or `hf auth login`; there is deliberately no --token option
(a token on the command line ends up in shell history and process listings). The repo gets the safetensors
weights, config with auto_map, modeling code, tokenizer, generation config and a model card, in one commit, and
loads with `AutoModel*.from_pretrained(repo_id, trust_remote_code=True)` without lmrecipes.
"""

from __future__ import annotations

import argparse
import logging
import sys

from lmrecipes.errors import one_line_errors
from lmrecipes.hub import DEFAULT_COMMIT_MESSAGE, HubTokenError, NotSelfContainedError, push_output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="output folder or checkpoint-* folder to push")
    parser.add_argument("repo_id", help="Hub repo id, e.g. your-name/mini-gpt-tiny (created if needed)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--commit_message", default=DEFAULT_COMMIT_MESSAGE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        commit = push_output_dir(
            args.folder, args.repo_id, private=args.private, commit_message=args.commit_message
        )
    except (HubTokenError, NotSelfContainedError, ValueError) as error:
        print(f"push_to_hub: {error}", file=sys.stderr)
        return 1
    print(commit.commit_url)
    return 0


if __name__ == "__main__":
    with one_line_errors():
        sys.exit(main())
