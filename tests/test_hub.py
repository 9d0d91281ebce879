"""Pushing to the Hub with the real `huggingface_hub` client, against the local fake Hub in tests/hub_server.py.

The client is pointed at the fake Hub the way HF_ENDPOINT does it (the variable is read once, when huggingface_hub
is imported, so the test also sets the constants it produced). The round trip downloads in a fresh Python where
`import lmrecipes` fails, as on the machine of someone who only has transformers.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers.utils.hub
from helpers import HUB_TOKEN as TOKEN
from helpers import HUB_USER as USER
from huggingface_hub import ModelCard, constants
from huggingface_hub.errors import HfHubHTTPError
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from lmrecipes.cards import build_model_card, save_recipe
from lmrecipes.errors import RecipeError
from lmrecipes.families import register_families
from lmrecipes.hub import (
    PICKLE_SUFFIXES,
    HubPushMixin,
    HubTokenError,
    NotSelfContainedError,
    prepare_trainer_push,
    push_output_dir,
    push_trained_model,
)
from lmrecipes.models.mini_gpt import MiniGPTConfig, MiniGPTForCausalLM
from lmrecipes.secrets import reject_token_fields

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPT = "the cat sat on the mat"
RECIPE = {
    "model_type": "mini_gpt",
    "dataset_name": "Salesforce/wikitext",
    "dataset_config_name": "wikitext-2-v1",
    "learning_rate": 1e-3,
    "max_steps": 2,
}
RESULTS = {"eval_loss": 4.25, "eval_perplexity": 70.1, "train_loss": 5.5, "eval_runtime": 0.5, "epoch": 1.0}

# Run in a fresh interpreter: block lmrecipes before anything imports, download through HF_ENDPOINT, load with the
# Auto classes and remote code, and run the usage snippet of the downloaded card.
DOWNLOAD_AND_RUN = """
import sys


class BlockLmrecipes:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("lmrecipes", "models"):
            raise ImportError(f"{name} is not installed on this machine")
        return None


sys.meta_path.insert(0, BlockLmrecipes())

import contextlib
import io
import json

import torch
from huggingface_hub import hf_hub_download
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

repo_id, input_ids, out_dir = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
torch.set_num_threads(1)
tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(repo_id, trust_remote_code=True).eval()
input_ids = torch.tensor(input_ids)
with torch.no_grad():
    logits = model(input_ids).logits
    generated = model.generate(input_ids, max_new_tokens=8, do_sample=False)
save_file({"logits": logits.contiguous(), "generated": generated.contiguous()}, f"{out_dir}/outputs.safetensors")

card = open(hf_hub_download(repo_id, "README.md"), encoding="utf-8").read()
snippet = card.split("```python\\n", 1)[1].split("```", 1)[0]
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    exec(snippet, {"__name__": "__main__"})
try:
    import lmrecipes  # noqa: F401
    lmrecipes_importable = True
except ImportError:
    lmrecipes_importable = False
report = {
    "model_module": type(model).__module__,
    "snippet_output": printed.getvalue(),
    "lmrecipes_importable": lmrecipes_importable,
    "lmrecipes_modules": sorted(m for m in sys.modules if m.partition(".")[0] in ("lmrecipes", "models")),
}
with open(f"{out_dir}/report.json", "w") as f:
    json.dump(report, f)
"""


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, byte_bpe_tokenizer) -> Path:
    """A tiny mini_gpt output folder as the training scripts leave it: model, tokenizer, results, card."""
    register_families()  # makes save_pretrained write auto_map and copy the code files
    torch.manual_seed(0)
    tokenizer = byte_bpe_tokenizer
    config = MiniGPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    folder = tmp_path_factory.mktemp("run") / "output"
    MiniGPTForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "all_results.json").write_text(json.dumps(RESULTS))
    log_history = [{"loss": 6.0, "step": 1}, {"loss": 5.5, "step": 2}, {"eval_loss": 4.25, "step": 2}]
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": log_history}))
    build_model_card(folder, RECIPE)
    return folder


@pytest.fixture
def model_dir(saved_model, tmp_path) -> Path:
    """A private copy of the output folder, for tests that change it."""
    return Path(shutil.copytree(saved_model, tmp_path / "output"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def load_push_script():
    spec = importlib.util.spec_from_file_location(
        "push_to_hub_script", REPO_ROOT / "scripts" / "push_to_hub.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------- round trip


def test_round_trip_loads_identically_where_lmrecipes_cannot_be_imported(fake_hub, model_dir, tmp_path):
    # Resume state and nested checkpoints sit in a real output folder; they are not part of the model repo.
    torch.save({"step": 2}, model_dir / "optimizer.pt")
    (model_dir / "checkpoint-1").mkdir()
    (model_dir / "checkpoint-1" / "model.safetensors").write_bytes(b"not pushed")
    local_before = snapshot(model_dir)
    repo_id = f"{USER}/tiny-gpt"

    commit = push_output_dir(model_dir, repo_id, private=True)

    assert fake_hub.head(repo_id) == commit.oid
    assert fake_hub.repos[repo_id].private
    remote = fake_hub.read_files(repo_id)
    self_contained = {
        "model.safetensors",
        "config.json",
        "configuration_mini_gpt.py",
        "modeling_mini_gpt.py",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "README.md",
        "training_loss.png",
    }
    assert self_contained <= set(remote)
    assert not any(path.endswith((".pt", ".bin")) or path.startswith("checkpoint-") for path in remote)
    assert remote["model.safetensors"] == local_before["model.safetensors"]
    assert snapshot(model_dir) == local_before  # pushing only reads the folder

    # The reference: the local folder, loaded with lmrecipes' own classes.
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    assert type(model).__module__.startswith("lmrecipes.")
    input_ids = tokenizer([PROMPT], return_tensors="pt").input_ids
    card = remote["README.md"].decode()
    snippet_tokens = int(re.search(r"max_new_tokens=(\d+)", card).group(1))
    threads = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # the same kernels as the fresh process below, so results can be compared exactly
    try:
        with torch.no_grad():
            logits = model(input_ids).logits
            generated = model.generate(input_ids, max_new_tokens=8, do_sample=False)
            snippet_ids = model.generate(
                **tokenizer("The meaning of life is", return_tensors="pt"),
                max_new_tokens=snippet_tokens,
                do_sample=False,
            )
    finally:
        torch.set_num_threads(threads)
    expected_snippet_output = tokenizer.decode(snippet_ids[0], skip_special_tokens=True) + "\n"

    script = tmp_path / "download_and_run.py"
    script.write_text(DOWNLOAD_AND_RUN)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_ENDPOINT=fake_hub.url,
        HF_TOKEN=TOKEN,
        HF_HOME=str(tmp_path / "downloader-home"),
        HF_HUB_OFFLINE="0",
    )
    result = subprocess.run(
        [sys.executable, str(script), repo_id, json.dumps(input_ids.tolist()), str(workdir)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    report = json.loads((workdir / "report.json").read_text())
    assert not report["lmrecipes_importable"] and report["lmrecipes_modules"] == []
    assert report["model_module"].startswith("transformers_modules.")  # the repo's own code, not lmrecipes
    downloaded = load_file(workdir / "outputs.safetensors")
    assert torch.equal(downloaded["logits"], logits)
    assert torch.equal(downloaded["generated"], generated)
    assert report["snippet_output"] == expected_snippet_output  # the card's usage snippet runs as written
    assert fake_hub.unhandled == []


# --------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize("failure", ["server fails the commit midway", "client fails while sending"])
def test_failed_push_leaves_remote_at_previous_commit_and_local_output_untouched(
    fake_hub, model_dir, monkeypatch, failure
):
    repo_id = f"{USER}/tiny-gpt"
    first = push_output_dir(model_dir, repo_id)
    remote_before = fake_hub.read_files(repo_id)

    # Later in the run: new weights and new results to push.
    weights = load_file(model_dir / "model.safetensors")
    save_file({name: tensor + 1.0 for name, tensor in weights.items()}, model_dir / "model.safetensors")
    (model_dir / "all_results.json").write_text(json.dumps({**RESULTS, "eval_loss": 3.0}))
    local_before = snapshot(model_dir)

    if failure.startswith("server"):
        fake_hub.fail_commits_midway = True
    else:
        from huggingface_hub._commit_api import CommitOperationAdd

        real_b64content = CommitOperationAdd.b64content
        calls = []

        def failing_b64content(self):
            calls.append(self.path_in_repo)
            if len(calls) == 3:
                raise OSError(f"disk error while reading {self.path_in_repo}")
            return real_b64content(self)

        monkeypatch.setattr(CommitOperationAdd, "b64content", failing_b64content)

    with pytest.raises((HfHubHTTPError, OSError)):
        push_output_dir(model_dir, repo_id)

    assert fake_hub.head(repo_id) == first.oid
    assert fake_hub.read_files(repo_id) == remote_before
    assert snapshot(model_dir) == local_before


def test_push_without_token_fails_before_any_request(fake_hub, model_dir, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    local_before = snapshot(model_dir)

    with pytest.raises(HubTokenError, match="HF_TOKEN"):
        push_output_dir(model_dir, f"{USER}/tiny-gpt")
    assert load_push_script().main([str(model_dir), f"{USER}/tiny-gpt"]) == 1
    assert "HF_TOKEN" in capsys.readouterr().err

    assert fake_hub.requests == []
    assert snapshot(model_dir) == local_before


def test_rejected_token_stops_before_the_repo_is_touched(fake_hub, model_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_notAValidTokenForThisHub000000000")
    with pytest.raises(HubTokenError, match="rejected"):
        push_output_dir(model_dir, f"{USER}/tiny-gpt")
    assert [request.path for request in fake_hub.requests] == ["/api/whoami-v2"]
    assert fake_hub.repos == {}


def test_private_push_to_an_existing_public_repo_is_refused(fake_hub, model_dir):
    first = push_output_dir(model_dir, f"{USER}/tiny-gpt")
    with pytest.raises(ValueError, match="public"):
        push_output_dir(model_dir, f"{USER}/tiny-gpt", private=True)
    assert fake_hub.head(f"{USER}/tiny-gpt") == first.oid


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda d: (d / "modeling_mini_gpt.py").unlink(), "modeling_mini_gpt.py"),
        (lambda d: (d / "model.safetensors").unlink(), "safetensors"),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer"),
        (lambda d: (d / "generation_config.json").unlink(), "generation_config.json"),
        (
            lambda d: (d / "config.json").write_text(
                json.dumps(
                    {k: v for k, v in json.loads((d / "config.json").read_text()).items() if k != "auto_map"}
                )
            ),
            "auto_map",
        ),
        (
            lambda d: (d / "configuration_mini_gpt.py").write_text(
                "import lmrecipes\n" + (d / "configuration_mini_gpt.py").read_text()
            ),
            "imports lmrecipes",
        ),
    ],
    ids=["code file", "weights", "tokenizer", "generation config", "auto_map", "lmrecipes import"],
)
def test_folder_that_is_not_self_contained_is_refused_before_upload(fake_hub, model_dir, damage, named):
    damage(model_dir)
    with pytest.raises(NotSelfContainedError, match=re.escape(named)):
        push_output_dir(model_dir, f"{USER}/tiny-gpt")
    assert fake_hub.requests == []


# --------------------------------------------------------------------------------------------- tokens


def test_token_never_reaches_files_cards_logs_or_training_args(fake_hub, model_dir, caplog, monkeypatch):
    for name in (
        "lmrecipes",
        "huggingface_hub",
        "transformers",
    ):  # every log line, the libraries' debug ones too
        caplog.set_level(logging.DEBUG, logger=name)
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    recipe = {**RECIPE, "hub_token": TOKEN, "run_name": f"run-with-{TOKEN}-inside"}
    with pytest.raises(ValueError, match="hub_token"):
        reject_token_fields(recipe)

    save_recipe(model_dir, recipe)
    build_model_card(model_dir, recipe, RESULTS)
    args = TrainingArguments(
        output_dir=str(model_dir),
        hub_token=TOKEN,
        push_to_hub=True,
        hub_model_id=f"{USER}/tiny-gpt",
        report_to=[],
    )
    prepare_trainer_push(args)
    torch.save(args, model_dir / "training_args.bin")  # what the Trainer does with every checkpoint
    push_output_dir(model_dir, f"{USER}/tiny-gpt")

    secret = TOKEN.encode()
    assert [path for path, data in snapshot(model_dir).items() if secret in data] == []
    assert [path for path, data in fake_hub.read_files(f"{USER}/tiny-gpt").items() if secret in data] == []
    assert "/api/repos/create" in caplog.text  # huggingface_hub's request log was captured...
    assert TOKEN not in caplog.text  # ...and never shows the token
    card = ModelCard.load(model_dir / "README.md")
    assert "hub_token" not in card.text and "run-with-<redacted>-inside" in card.text


def test_push_refuses_a_folder_holding_the_token(fake_hub, model_dir):
    (model_dir / "notes.txt").write_text(f"pushed with {TOKEN}\n")
    with pytest.raises(HubTokenError, match="notes.txt"):
        push_output_dir(model_dir, f"{USER}/tiny-gpt")
    assert not any(request.path.endswith("/commit/main") for request in fake_hub.requests)


# --------------------------------------------------------------------------------------------- unreachable Hub


def unreachable_endpoint() -> str:
    """An http URL on 127.0.0.1 where nothing listens: the port was free a moment ago and is closed again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def point_client_at(monkeypatch, endpoint: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)


@pytest.mark.parametrize("failure", ["no server at HF_ENDPOINT", "offline mode"])
def test_push_that_cannot_reach_the_hub_fails_in_one_line_naming_the_endpoint(
    fake_hub, model_dir, monkeypatch, capsys, failure
):
    """huggingface_hub raised httpx's ConnectError (or OfflineModeIsEnabled) through the script, uncaught."""
    local_before = snapshot(model_dir)
    endpoint = fake_hub.url
    if failure == "offline mode":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    else:
        endpoint = unreachable_endpoint()
        point_client_at(monkeypatch, endpoint)

    with pytest.raises(RecipeError) as raised:
        push_output_dir(model_dir, f"{USER}/tiny-gpt")
    message = str(raised.value)
    assert message.startswith(f"Cannot reach the Hub at {endpoint} (HF_ENDPOINT): ")
    assert message.endswith("; nothing was pushed (local files are unchanged).") and "\n" not in message
    assert load_push_script().main([str(model_dir), f"{USER}/tiny-gpt"]) == 1
    assert f"push_to_hub: {message}\n" in capsys.readouterr().err

    assert fake_hub.requests == [] and fake_hub.repos == {}
    assert snapshot(model_dir) == local_before


# --------------------------------------------------------------------------------------------- Trainer and CLI


class PushingTrainer(HubPushMixin, Trainer):
    pass


def test_trainer_push_honours_hub_strategy_and_private_repo_then_cli_pushes_a_checkpoint(
    fake_hub, saved_model, tmp_path, byte_bpe_tokenizer
):
    from datasets import Dataset

    model = AutoModelForCausalLM.from_pretrained(saved_model)
    rows = [byte_bpe_tokenizer(line)["input_ids"][:16] for line in ["the cat sat on the mat and ran"] * 8]
    train_dataset = Dataset.from_dict({"input_ids": rows, "labels": rows})
    output_dir = tmp_path / "run"
    repo_id = f"{USER}/trainer-run"
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=2,
        per_device_train_batch_size=4,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        push_to_hub=True,
        hub_model_id=repo_id,
        hub_strategy="checkpoint",
        hub_private_repo=True,
    )
    prepare_trainer_push(args)
    save_recipe(output_dir, RECIPE)
    trainer = PushingTrainer(
        model=model, args=args, train_dataset=train_dataset, processing_class=byte_bpe_tokenizer
    )
    assert fake_hub.repos[repo_id].private  # created by Trainer.__init__, as hub_private_repo asks

    trainer.train()
    trainer.save_model()
    trainer.save_metrics("all", RESULTS)
    trainer.save_state()
    build_model_card(output_dir, RECIPE, repo_id=repo_id)
    final = push_trained_model(trainer)

    commits = {commit.message: commit for commit in fake_hub.repos[repo_id].commits}
    assert final.oid == fake_hub.head(repo_id) and "End of training" in commits
    # The Trainer's own pushes: the output folder on save (self-contained thanks to HubPushMixin) and, as
    # hub_strategy="checkpoint" asks, the checkpoint under last-checkpoint/.
    in_progress = fake_hub.read_files(repo_id, commits["Training in progress, step 2"].oid)
    assert {"model.safetensors", "config.json", "modeling_mini_gpt.py", "configuration_mini_gpt.py"} <= set(
        in_progress
    )
    model_save = fake_hub.read_files(repo_id, commits["Model save"].oid)  # trainer.save_model() pushes too
    assert "lmrecipes" in ModelCard(model_save["README.md"].decode()).data.tags  # our card, not the Trainer's
    remote = fake_hub.read_files(repo_id)
    assert "last-checkpoint/model.safetensors" in remote  # hub_strategy="checkpoint"
    # No commit of any of these pushes carries a pickle: the optimizer, scheduler and RNG state and
    # training_args.bin stay in the local checkpoint.
    for commit in fake_hub.repos[repo_id].commits:
        pickles = [
            path for path in fake_hub.read_files(repo_id, commit.oid) if path.endswith(PICKLE_SUFFIXES)
        ]
        assert not pickles, (commit.message, pickles)
    assert (output_dir / "checkpoint-2" / "optimizer.pt").is_file()  # still there for a local resume
    assert "modeling_mini_gpt.py" in remote and "model.safetensors" in remote
    card = ModelCard(remote["README.md"].decode())
    assert "lmrecipes" in card.data.tags and f'repo_id = "{repo_id}"' in card.text

    # The CLI pushes a checkpoint folder: it gets a card built from its trainer state; the folder is untouched.
    checkpoint = output_dir / "checkpoint-2"
    checkpoint_before = snapshot(checkpoint)
    assert load_push_script().main([str(checkpoint), f"{USER}/trainer-run-step2"]) == 0
    pushed = fake_hub.read_files(f"{USER}/trainer-run-step2")
    assert pushed["model.safetensors"] == checkpoint_before["model.safetensors"]
    assert "README.md" in pushed and "README.md" not in checkpoint_before
    assert not any(path.endswith((".pt", ".pth", ".bin")) for path in pushed)
    assert snapshot(checkpoint) == checkpoint_before
    assert fake_hub.unhandled == []


def test_trainer_run_that_cannot_reach_the_hub_fails_in_one_line_and_keeps_its_work(
    fake_hub, saved_model, tmp_path, byte_bpe_tokenizer, monkeypatch, caplog
):
    model = AutoModelForCausalLM.from_pretrained(saved_model)
    output_dir = tmp_path / "run"
    repo_id = f"{USER}/trainer-run"
    args = TrainingArguments(
        output_dir=str(output_dir),
        push_to_hub=True,
        hub_model_id=repo_id,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
    )
    prepare_trainer_push(args)
    save_recipe(output_dir, RECIPE)
    unreachable = unreachable_endpoint()

    # Trainer.__init__ creates the repo: with no Hub there, the run stops before any training.
    with monkeypatch.context() as offline:
        point_client_at(offline, unreachable)
        offline.setattr(
            transformers.utils.hub, "_hf_api", None
        )  # the Trainer's HfApi, built for this endpoint
        with pytest.raises(
            RecipeError, match=re.escape(f"Cannot reach the Hub at {unreachable} (HF_ENDPOINT)")
        ):
            PushingTrainer(model=model, args=args, processing_class=byte_bpe_tokenizer)

    # The network goes away during the run: save_model's push only warns, the results and card are still written,
    # and the final push fails in one line saying how to push the complete folder later.
    trainer = PushingTrainer(model=model, args=args, processing_class=byte_bpe_tokenizer)
    point_client_at(monkeypatch, unreachable)
    with caplog.at_level(logging.WARNING, logger="lmrecipes.hub"):
        trainer.save_model()
    assert "the final push will try again" in caplog.text
    trainer.save_metrics("all", RESULTS)
    trainer.save_state()
    build_model_card(output_dir, RECIPE, repo_id=repo_id)
    with pytest.raises(RecipeError) as raised:
        push_trained_model(trainer)
    message = str(raised.value)
    assert (
        message.startswith(f"Cannot reach the Hub at {unreachable} (HF_ENDPOINT): ") and "\n" not in message
    )
    assert "nothing was pushed" in message
    assert f"push it with `python scripts/push_to_hub.py {output_dir} {repo_id}`" in message
    assert "model.safetensors" not in fake_hub.read_files(repo_id)  # the repo was created, nothing reached it
    assert {"model.safetensors", "all_results.json", "README.md"} <= {p.name for p in output_dir.iterdir()}
