"""Push a trained model to the Hugging Face Hub as a self-contained repo, and keep the token out of everything.

The Trainer's own pushes go through `HubPushMixin` (only safetensors, JSON, code, tokenizer and card; our card), the
final one through `push_trained_model`, and any folder afterwards through `push_output_dir` as a single commit. The
token comes only from `HF_TOKEN` or a login, never from a recipe. docs/hub.md tells the whole flow.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from transformers.trainer_utils import HubStrategy, SaveStrategy
from transformers.utils.hub import PushInProgress

from lmrecipes import cards
from lmrecipes.errors import RecipeError
from lmrecipes.secrets import scrub_training_args
from lmrecipes.tokenization import TOKENIZER_FILES

try:  # the transport errors of huggingface_hub's HTTP client: httpx2 from huggingface_hub 2, httpx in 1.x
    from httpx2 import TransportError
except ImportError:
    from httpx import TransportError

logger = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload model trained with lmrecipes"

# Training state that only `Trainer(resume_from_checkpoint=...)` needs. These are pickles: a downloaded model must
# not ask anyone to unpickle them, so they are never pushed.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class HubTokenError(RuntimeError):
    """No usable Hugging Face token (missing, or rejected by the Hub)."""


class NotSelfContainedError(ValueError):
    """The folder would not load from the Hub with the Auto classes and `trust_remote_code=True`."""


class HubUnreachableError(RecipeError):
    """The Hub endpoint (HF_ENDPOINT) cannot be reached: offline mode, no network, or no server there."""


@contextmanager
def reaching_the_hub(
    endpoint: str, outcome: str = "nothing was pushed (local files are unchanged)"
) -> Iterator[None]:
    """Turn the client's connection errors (an httpx ConnectError, a timeout, offline mode) into one line that names
    the endpoint and says what happened (`outcome`); other errors pass unchanged."""
    try:
        yield
    except (ConnectionError, TransportError) as error:  # OfflineModeIsEnabled is a ConnectionError
        if isinstance(error, OfflineModeIsEnabled):
            reason = "offline mode is on (HF_HUB_OFFLINE is set)"
        else:
            reason = f"{type(error).__name__}: {' '.join(str(error).split())}"
        raise HubUnreachableError(
            f"Cannot reach the Hub at {endpoint} (HF_ENDPOINT): {reason}; {outcome}."
        ) from error


# --------------------------------------------------------------------------------------------- token


def resolve_hub_token() -> str:
    """The token from `HF_TOKEN` or the `huggingface_hub` login, or a clear error before anything is uploaded."""
    token = huggingface_hub.get_token()
    if not token:
        raise HubTokenError(
            "No Hugging Face token found, so nothing was pushed (local files are unchanged). Set the HF_TOKEN "
            "environment variable to a token with write access, or run `hf auth login`."
        )
    return token


# --------------------------------------------------------------------------------------------- folder checks


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _auto_map_modules(auto_map: Mapping[str, Any]) -> list[str]:
    """Module names referenced by `auto_map` (values are "module.Class", or [slow, fast] pairs for tokenizers)."""
    references = []
    for value in auto_map.values():
        references.extend(value if isinstance(value, (list, tuple)) else [value])
    return sorted({ref.rsplit(".", 1)[0] for ref in references if ref})


def check_self_contained(folder: str | Path) -> list[str]:
    """What a folder lacks to load from the Hub without lmrecipes installed; an empty list means nothing.

    Checked: safetensors weights (and every shard of a sharded index), config.json with `model_type` and an
    `auto_map`, every code file named in `auto_map` (and the files those import relatively), code that does not
    import lmrecipes, tokenizer files, and a generation config for models that generate.
    """
    from transformers.dynamic_module_utils import get_imports, get_relative_import_files

    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    problems = []

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        for shard in sorted(set(_read_json(index)["weight_map"].values())):
            if not (folder / shard).is_file():
                problems.append(f"weight shard {shard} (listed in {index.name}) is missing")
    elif not (folder / "model.safetensors").is_file():
        pickled = sorted(p.name for p in folder.glob("pytorch_model*.bin"))
        hint = (
            f" (found pickle weights {', '.join(pickled)}: re-save with save_pretrained)" if pickled else ""
        )
        problems.append(f"no safetensors weights: model.safetensors is missing{hint}")

    config_path = folder / "config.json"
    if not config_path.is_file():
        problems.append("config.json is missing")
        config = {}
    else:
        config = _read_json(config_path)
        if "model_type" not in config:
            problems.append("config.json has no model_type")
    auto_map = config.get("auto_map") or {}
    if config and not auto_map:
        problems.append(
            "config.json has no auto_map, so the Hub copy needs lmrecipes installed: save the model after "
            "`import lmrecipes` (which calls register_for_auto_class)"
        )
    elif auto_map and not any(key.startswith("AutoModel") for key in auto_map):
        problems.append("config.json auto_map names no AutoModel* class")
    for module in _auto_map_modules(auto_map):
        if "--" in module:  # "other/repo--module.Class" points at code in another repo
            problems.append(f"auto_map refers to code in another repo ({module}); copy the code file here")
            continue
        code_file = folder / f"{module}.py"
        if not code_file.is_file():
            problems.append(f"code file {code_file.name} (named in config.json auto_map) is missing")
            continue
        for needed in [code_file, *map(Path, get_relative_import_files(code_file))]:
            if not needed.is_file():
                problems.append(f"code file {needed.name} (imported by {code_file.name}) is missing")
            elif "lmrecipes" in get_imports(needed):
                problems.append(f"code file {needed.name} imports lmrecipes, which downloaders do not have")

    if not (folder / "tokenizer_config.json").is_file():
        problems.append("tokenizer_config.json is missing (save the tokenizer with save_pretrained)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        problems.append(f"no tokenizer vocabulary: none of {', '.join(TOKENIZER_FILES)}")

    generates = any(
        arch.endswith(("ForCausalLM", "LMHeadModel")) for arch in config.get("architectures") or []
    )
    if generates and not (folder / "generation_config.json").is_file():
        problems.append("generation_config.json is missing for a model that generates")
    return list(dict.fromkeys(problems))  # without repeats, in the order found


def require_self_contained(folder: str | Path) -> None:
    problems = check_self_contained(folder)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise NotSelfContainedError(f"{folder} cannot be pushed as a self-contained model repo:\n{listing}")


def files_to_push(folder: str | Path) -> list[str]:
    """Paths (relative, posix) of the files of `folder` that go to the Hub.

    Left out: pickles (optimizer, scheduler, RNG state, training_args.bin), nested `checkpoint-*` folders, hidden and
    `_`-prefixed entries (the patterns `Trainer.push_to_hub` ignores too) and Python caches.
    """
    folder = Path(folder)
    selected = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or path.suffix in PICKLE_SUFFIXES or path.suffix == ".pyc":
            continue
        if any(part.startswith((".", "_", "checkpoint-")) for part in relative.parts):
            continue
        selected.append(relative.as_posix())
    return selected


def files_containing(sources: Mapping[str, Path], secret: str) -> list[str]:
    """Which of the files to push hold `secret` verbatim (weights are tensors, so safetensors files are skipped)."""
    needle = secret.encode()
    return [
        path
        for path, source in sources.items()
        if not path.endswith(".safetensors") and needle in source.read_bytes()
    ]


# --------------------------------------------------------------------------------------------- pushing


def _authenticated_user(api: HfApi) -> str:
    try:
        return api.whoami()["name"]
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code == 401:
            raise HubTokenError(
                f"The Hugging Face token from HF_TOKEN or the login was rejected by {api.endpoint}; nothing was "
                "pushed. Check that it is valid and has write access."
            ) from None
        raise


def push_output_dir(
    output_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    commit_description: str | None = None,
    revision: str | None = None,
) -> CommitInfo:
    """Push a training output folder (or a `checkpoint-*` folder) to `repo_id` as a single commit.

    Creates the repo if needed (`private` applies to a new repo; asking for a private push to an existing public
    repo is an error). The model card: a README.md written by lmrecipes is rebuilt for `repo_id` from the folder's
    recipe, results and trainer state (so its usage snippet names the repo it is in); a README.md without the
    `lmrecipes` tag is the user's own and is pushed as it is. `revision` is the branch to commit to (default main).
    """
    folder = Path(output_dir)
    token = resolve_hub_token()  # before any request: a push without a token never reaches the Hub
    require_self_contained(folder)

    api = HfApi(token=token)
    sources: dict[str, Path] = {relative: folder / relative for relative in files_to_push(folder)}
    with reaching_the_hub(api.endpoint), tempfile.TemporaryDirectory(prefix="lmrecipes-card-") as staging:
        user = _authenticated_user(api)
        if "/" not in repo_id:
            repo_id = f"{user}/{repo_id}"
        if cards.should_rebuild_card(folder):
            card_files = cards.build_model_card_for_folder(folder, repo_id=repo_id, save_dir=staging)
            sources.update(card_files)
        leaking = files_containing(sources, token)
        if leaking:
            raise HubTokenError(
                f"Refusing to push: {', '.join(leaking)} in {folder} contain the Hugging Face token. Remove it "
                "from those files (recipes and TrainingArguments must not carry tokens) and push again."
            )
        operations = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(src)) for path, src in sources.items()
        ]

        repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
        repo_id = repo_url.repo_id
        if private and not api.repo_info(repo_id).private:
            raise RecipeError(
                f"{repo_id} already exists and is public, but a private push was asked for; nothing was pushed. "
                "Make the repo private on the Hub first, or push to another repo id."
            )
        logger.info("Pushing %d files from %s to %s/%s", len(operations), folder, api.endpoint, repo_id)
        commit = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message,
            commit_description=commit_description,
            revision=revision,
        )
    logger.info("Pushed %s", commit.commit_url)
    return commit


def prepare_trainer_push(args: Any) -> None:
    """Call on TrainingArguments before building the Trainer (its __init__ already creates the Hub repo).

    With `push_to_hub` set: drops any `hub_token` (see `scrub_training_args`) and fails now, before training,
    if there is no token.
    """
    scrub_training_args(args)
    if getattr(args, "push_to_hub", False):
        resolve_hub_token()
        if not args.hub_model_id:
            logger.warning(
                "push_to_hub is set without hub_model_id: the repo is named after the output folder."
            )


class HubPushMixin:
    """Trainer additions that keep the Trainer's own pushes (`push_to_hub` with any `hub_strategy`) lmrecipes-shaped.

    Mix in before `Trainer`: `class RecipeTrainer(HubPushMixin, Trainer)`. Four gaps of Trainer 5.x are closed:
    - its pushes upload pickles (training_args.bin; optimizer, scheduler and RNG state with hub_strategy
      checkpoint): only `files_to_push` go;
    - before a checkpoint push, the Trainer copies only weights, config and tokenizer from the checkpoint to the
      output folder it pushes, so the repo root lacks the remote code files until the end of training: they are
      copied too, and every intermediate commit loads with `trust_remote_code=True`;
    - `Trainer.push_to_hub` (which `save_model` calls when `push_to_hub` is set) writes its own model card over
      README.md: the lmrecipes card is written instead, from the files in the output folder;
    - a Hub it cannot reach raises the client's connection error: `Trainer.__init__` (which creates the repo) fails
      in one line instead (HubUnreachableError), and `push_to_hub` logs it and returns None, so that a run whose
      network drops still writes its results and card before `push_trained_model` reports it.
    """

    # Trainer 5.x uploads whole folders (training_args.bin, and with hub_strategy checkpoint the optimizer,
    # scheduler and RNG pickles) and has no hook for the files a push takes, so its two push methods are restated
    # here with lmrecipes' file filter (`files_to_push`): safetensors, JSON, code, tokenizer and card only.
    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        args = self.args
        if not self.is_world_process_zero() or args.hub_strategy == HubStrategy.END:
            return
        if (
            not args.hub_always_push
            and self.push_in_progress is not None
            and not self.push_in_progress.is_done()
        ):
            return
        self.callback_handler.on_push_begin(args, self.state, self.control)
        output_dir = Path(args.output_dir)
        for relative in files_to_push(checkpoint_folder):  # weights, config, code: no new sync of the weights
            if "/" not in relative and relative not in ("trainer_state.json", "README.md"):
                shutil.copy(Path(checkpoint_folder) / relative, output_dir / relative)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        step = f"step {self.state.global_step}" if args.save_strategy == SaveStrategy.STEPS else None
        message = f"Training in progress, {step or f'epoch {int(self.state.epoch)}'}"
        jobs = [self._upload_safe_files(output_dir, message, blocking=False)]
        if args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            path_in_repo = "last-checkpoint" if args.hub_strategy == HubStrategy.CHECKPOINT else None
            jobs.append(
                self._upload_safe_files(
                    Path(checkpoint_folder),
                    message + ", checkpoint",
                    blocking=False,
                    path_in_repo=path_in_repo or Path(checkpoint_folder).name,
                )
            )
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        # Trainer.__init__ creates the repo: an unreachable Hub fails there in one line, before any training.
        with reaching_the_hub(constants.ENDPOINT, "nothing was pushed and training has not started"):
            super().init_hf_repo(token=token, private=private)

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        **kwargs: Any,
    ) -> Any:
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self.create_model_card()
        self._finish_current_push()
        try:
            with reaching_the_hub(constants.ENDPOINT, "the final push will try again"):
                return self._upload_safe_files(
                    Path(self.args.output_dir),
                    commit_message,
                    blocking=blocking,
                    token=token,
                    revision=revision,
                )
        except HubUnreachableError as error:
            # trainer.save_model() pushes too, before the evaluation, results and card are written: failing here
            # would leave them unwritten. push_trained_model, after them, pushes again and fails in one line.
            logger.warning("%s", error)
            return None

    def _upload_safe_files(
        self,
        folder: Path,
        commit_message: str | None,
        *,
        blocking: bool,
        path_in_repo: str | None = None,
        token: str | None = None,
        revision: str | None = None,
    ) -> Any:
        return HfApi().upload_folder(
            repo_id=self.hub_model_id,
            folder_path=folder,
            path_in_repo=path_in_repo,
            commit_message=commit_message,
            token=token or self.args.hub_token,
            run_as_future=not blocking,
            allow_patterns=files_to_push(folder),
            revision=revision or self.args.hub_revision,
        )

    def create_model_card(self, **kwargs: Any) -> None:
        if self.is_world_process_zero():
            output_dir = Path(self.args.output_dir)
            recipe, results = cards.load_recipe(output_dir), cards.load_results(output_dir)
            cards.build_model_card(
                output_dir, recipe, results, repo_id=self.hub_model_id or self.args.hub_model_id
            )


def push_trained_model(trainer: Any, commit_message: str = "End of training") -> CommitInfo | None:
    """The final push of a Trainer run with `push_to_hub=True`: the output folder with the lmrecipes card.

    Call it after the final model, tokenizer, `all_results.json` (`trainer.save_metrics("all", ...)`),
    `trainer_state.json` (`trainer.save_state()`) and the card are saved. It waits for the checkpoint pushes the
    Trainer still has in flight, then pushes with `push_output_dir` to the repo the Trainer created.
    Returns None when the arguments do not ask for a push.
    """
    args = trainer.args
    if not args.push_to_hub or not trainer.is_world_process_zero():
        return None
    in_flight = getattr(trainer, "push_in_progress", None)
    if in_flight is not None:
        for job in in_flight.jobs:
            error = job.exception()  # waits; a failed checkpoint push is superseded by this final one
            if error is not None:
                logger.warning("A checkpoint push failed (%s); the final push goes on.", type(error).__name__)
    repo_id = trainer.hub_model_id or args.hub_model_id or Path(args.output_dir).absolute().name
    try:
        return push_output_dir(
            args.output_dir,
            repo_id,
            private=bool(args.hub_private_repo),
            commit_message=commit_message,
            revision=args.hub_revision,
        )
    except HubUnreachableError as error:  # the run's work is all on disk: say how to push it later
        raise HubUnreachableError(
            f"{error} The output folder {args.output_dir} is complete: push it with `python scripts/push_to_hub.py "
            f"{args.output_dir} {repo_id}` once the Hub can be reached."
        ) from error
