"""Conformance suite that every model class runs through, in the spirit of transformers' ModelTesterMixin.

Each test is parametrized over the head classes in `model_specs.HEADS`; a new head only needs an entry there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from inspect import signature

import pytest
import torch
from model_specs import (
    ATTENTION_FAMILIES,
    CAUSAL_LMS,
    HEADS,
    HEADS_WITH_LOSS,
    PAD_ID,
    TINY_CONFIGS,
    VOCAB_SIZE,
    family_of,
    kind_of,
    main_output,
    make_labels,
    manual_loss,
    padded_batch,
    random_input_ids,
    tiny_model,
)
from safetensors.torch import save_file
from transformers import AutoConfig, Trainer, TrainingArguments

from lmrecipes import FAMILIES

ALL_HEADS = list(HEADS)
ids = lambda cls: cls.__name__  # noqa: E731


# ----------------------------------------------------------------------------------------------------------------------
# Save and load
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", ALL_HEADS, ids=ids)
def test_save_and_load_reproduces_logits(model_class, tmp_path):
    model = tiny_model(model_class)
    input_ids = random_input_ids(2, 9)
    with torch.no_grad():
        expected = main_output(model_class, model(input_ids))

    model.save_pretrained(tmp_path)
    saved = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in saved and not any(name.endswith((".bin", ".pt", ".pth")) for name in saved)
    family = family_of(model_class)
    assert {f"configuration_{family}.py", f"modeling_{family}.py"} <= saved, "remote code files not copied"

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == family
    assert config["auto_map"]["AutoConfig"] == f"configuration_{family}.{type(model.config).__name__}"

    # Through the Auto class registered by `import lmrecipes`, as for a built-in model.
    auto_class = next(auto for auto, head in FAMILIES[family].heads.items() if head is model_class)
    reloaded = auto_class.from_pretrained(tmp_path)
    assert type(reloaded) is model_class
    with torch.no_grad():
        torch.testing.assert_close(
            main_output(model_class, reloaded.eval()(input_ids)), expected, rtol=0, atol=0
        )


def test_remote_code_loads_without_lmrecipes(tmp_path):
    """Every saved folder loads with trust_remote_code=True in a Python where lmrecipes cannot be imported."""
    cases = []
    input_ids = random_input_ids(2, 9)
    for model_class in ALL_HEADS:
        folder = tmp_path / model_class.__name__
        model = tiny_model(model_class)
        model.save_pretrained(folder)
        with torch.no_grad():
            save_file(
                {"input_ids": input_ids, "expected": main_output(model_class, model(input_ids)).contiguous()},
                folder / "io.safetensors",
            )
        auto_class = [
            name
            for name in json.loads((folder / "config.json").read_text())["auto_map"]
            if name != "AutoConfig"
        ]
        assert len(auto_class) == 1
        cases.append((str(folder), auto_class[0], kind_of(model_class)))

    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class BlockLmrecipes(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("lmrecipes", "models"):
                    raise ImportError(f"{{name}} is blocked in this test")

        sys.meta_path.insert(0, BlockLmrecipes())
        import torch, transformers
        from safetensors.torch import load_file

        for folder, auto_class, kind in {cases!r}:
            model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
            assert "lmrecipes" not in type(model).__module__, type(model).__module__
            io = load_file(folder + "/io.safetensors")
            with torch.no_grad():
                out = model(io["input_ids"])
            if kind == "base":
                got = out.last_hidden_state
            elif kind == "question_answering":
                got = torch.stack([out.start_logits, out.end_logits], dim=-1)
            else:
                got = out.logits
            torch.testing.assert_close(got, io["expected"], rtol=0, atol=0)
            print("OK", auto_class, type(model).__name__)
        """
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules_cache")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("OK") == len(cases)


# ----------------------------------------------------------------------------------------------------------------------
# Loss and gradients
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", HEADS_WITH_LOSS, ids=ids)
def test_loss_equals_manual_cross_entropy(model_class):
    model = tiny_model(model_class)
    input_ids = random_input_ids(3, 11)
    labels = make_labels(model_class, input_ids)
    outputs = model(input_ids, **labels)
    assert outputs.loss is not None and outputs.loss.ndim == 0
    # The reference reads the logits of a forward without labels (an adaptive softmax computes none with them).
    torch.testing.assert_close(outputs.loss, manual_loss(model_class, model(input_ids), labels))


@pytest.mark.parametrize(
    "model_class",
    [c for c in HEADS_WITH_LOSS if kind_of(c) in ("causal_lm", "masked_lm", "token_classification")],
    ids=ids,
)
def test_label_minus_100_is_ignored(model_class):
    model = tiny_model(model_class)
    input_ids = random_input_ids(2, 12)
    labels = make_labels(model_class, input_ids)
    labels["labels"][:, 5:9] = -100
    outputs = model(input_ids, **labels)
    # The reference skips the -100 positions (cross_entropy's ignore_index); a head that counted them, or crashed
    # on them, would differ.
    torch.testing.assert_close(outputs.loss, manual_loss(model_class, model(input_ids), labels))


@pytest.mark.parametrize("model_class", HEADS_WITH_LOSS, ids=ids)
def test_every_parameter_receives_a_gradient(model_class):
    model = tiny_model(model_class).train()
    input_ids = random_input_ids(3, 10)
    model(input_ids, **make_labels(model_class, input_ids)).loss.backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("model_class", HEADS_WITH_LOSS, ids=ids)
def test_gradient_checkpointing_gives_the_same_gradients(model_class):
    input_ids = random_input_ids(2, 10)
    labels = make_labels(model_class, input_ids)
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(model_class).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert model.is_activation_checkpointing
        model(input_ids, **labels).loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


# ----------------------------------------------------------------------------------------------------------------------
# Masks and attention implementations
# ----------------------------------------------------------------------------------------------------------------------


PADDING_CASES = [(c, "right") for c in ALL_HEADS] + [
    (c, "left") for c in ALL_HEADS if family_of(c) in ("lstm_lm", "mini_gpt")
]


@pytest.mark.parametrize(
    "model_class,side", PADDING_CASES, ids=lambda x: x.__name__ if isinstance(x, type) else x
)
def test_padded_batch_matches_each_example_alone(model_class, side):
    model = tiny_model(model_class)
    seq_len, lengths = 10, [10, 6, 3]
    input_ids, attention_mask = padded_batch(lengths, seq_len, side)
    with torch.no_grad():
        batched = main_output(model_class, model(input_ids, attention_mask=attention_mask))
        for row, length in enumerate(lengths):
            real = slice(0, length) if side == "right" else slice(seq_len - length, seq_len)
            alone = main_output(model_class, model(input_ids[row : row + 1, real]))
            if kind_of(model_class) == "sequence_classification":
                torch.testing.assert_close(batched[row], alone[0], atol=1e-5, rtol=1e-4)
            else:
                torch.testing.assert_close(batched[row, real], alone[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model_class", [c for c in ALL_HEADS if family_of(c) in ATTENTION_FAMILIES], ids=ids)
def test_sdpa_and_eager_agree(model_class):
    input_ids, attention_mask = padded_batch([10, 7], 10, "right")
    outputs = {}
    for implementation in ("sdpa", "eager"):
        model = tiny_model(model_class, attn_implementation=implementation)
        assert model.config._attn_implementation == implementation
        with torch.no_grad():
            outputs[implementation] = main_output(
                model_class, model(input_ids, attention_mask=attention_mask)
            )
    real = attention_mask.bool()
    if kind_of(model_class) == "sequence_classification":
        torch.testing.assert_close(outputs["sdpa"], outputs["eager"], atol=1e-5, rtol=1e-4)
    else:
        torch.testing.assert_close(outputs["sdpa"][real], outputs["eager"][real], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", list(TINY_CONFIGS))
def test_config_rejects_inconsistent_values(family):
    make_config = TINY_CONFIGS[family]
    with pytest.raises(ValueError, match="hidden_size"):
        make_config(hidden_size=0)
    with pytest.raises(ValueError, match="pad_token_id"):
        make_config(pad_token_id=VOCAB_SIZE)
    if family in ATTENTION_FAMILIES:
        with pytest.raises(ValueError, match="num_attention_heads|hidden_size"):
            make_config(hidden_size=30, num_attention_heads=4)
    # A valid config survives a round trip through AutoConfig.
    config = make_config()
    assert type(AutoConfig.for_model(**config.to_diff_dict())) is type(config)


# ----------------------------------------------------------------------------------------------------------------------
# generate()
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", CAUSAL_LMS, ids=ids)
def test_greedy_with_cache_equals_without(model_class):
    model = tiny_model(model_class)
    prompt = random_input_ids(2, 5)
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": PAD_ID, "eos_token_id": None}
    with_cache = model.generate(prompt, use_cache=True, **kwargs)
    without_cache = model.generate(prompt, use_cache=False, **kwargs)
    assert with_cache.shape == (2, 17)
    torch.testing.assert_close(with_cache, without_cache, rtol=0, atol=0)


@pytest.mark.parametrize("model_class", CAUSAL_LMS, ids=ids)
def test_batched_left_padded_generation_equals_one_prompt_at_a_time(model_class):
    model = tiny_model(model_class)
    input_ids, attention_mask = padded_batch([7, 4, 2], 7, "left")
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": PAD_ID, "eos_token_id": None}
    batched = model.generate(input_ids, attention_mask=attention_mask, **kwargs)
    for row, length in enumerate([7, 4, 2]):
        alone = model.generate(input_ids[row : row + 1, 7 - length :], **kwargs)
        torch.testing.assert_close(batched[row, 7:], alone[0, length:], rtol=0, atol=0)


@pytest.mark.parametrize("model_class", CAUSAL_LMS, ids=ids)
def test_beam_search_runs_and_matches_uncached(model_class):
    model = tiny_model(model_class)
    prompt = random_input_ids(2, 4)
    kwargs = {"max_new_tokens": 6, "num_beams": 3, "num_return_sequences": 2, "do_sample": False}
    kwargs |= {"pad_token_id": PAD_ID, "eos_token_id": None}
    beams = model.generate(prompt, use_cache=True, **kwargs)
    assert beams.shape == (4, 10)
    # Beam search reorders the cache every step; a wrong reorder would change the result versus recomputing.
    torch.testing.assert_close(beams, model.generate(prompt, use_cache=False, **kwargs), rtol=0, atol=0)


@pytest.mark.parametrize("model_class", CAUSAL_LMS, ids=ids)
@pytest.mark.parametrize("argument", ["cache", "past_key_values"])
def test_a_forward_continues_from_the_cache_it_is_given(model_class, argument):
    """`cache` is transformers' name for the state since 5.24; the old `past_key_values` still works, with a warning."""
    model = tiny_model(model_class)
    input_ids = random_input_ids(2, 9)
    with torch.no_grad():
        whole = model(input_ids).logits
        first = model(input_ids[:, :5], use_cache=True)
        if argument == "cache":
            second = model(input_ids[:, 5:], cache=first.cache)
        else:
            with pytest.warns(FutureWarning, match="past_key_values"):
                second = model(input_ids[:, 5:], past_key_values=first.cache)
    assert second.cache.get_seq_length() == 9
    torch.testing.assert_close(second.logits, whole[:, 5:], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------------------------


class _Memorise(torch.utils.data.Dataset):
    def __init__(self, model_class: type):
        self.input_ids = random_input_ids(8, 12, seed=7)
        self.labels = make_labels(model_class, self.input_ids, seed=7)

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[i]} | {k: v[i] for k, v in self.labels.items()}


@pytest.mark.parametrize("model_class", HEADS_WITH_LOSS, ids=ids)
def test_trainer_reduces_loss_on_a_memorisation_task(model_class, tmp_path):
    model = tiny_model(model_class).train()
    dataset = _Memorise(model_class)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        learning_rate=2e-2,
        lr_scheduler_type="constant",
        max_steps=25,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 25
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("model_class", CAUSAL_LMS, ids=ids)
def test_adaptive_softmax_logits_are_log_probabilities_and_the_loss_never_builds_them(model_class):
    model = tiny_model(model_class, tie_word_embeddings=False, adaptive_softmax_cutoffs=[10, 30])
    input_ids = random_input_ids(2, 7)
    log_probs = model(input_ids).logits
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 7))
    with_labels = model(input_ids, labels=input_ids)
    assert with_labels.logits is None
    expected = torch.nn.functional.nll_loss(log_probs[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten())
    torch.testing.assert_close(with_labels.loss, expected)
    assert model.get_output_embeddings() is None


# ----------------------------------------------------------------------------------------------------------------------
# Running the whole suite for one configuration variant (the family test files use it for the options recipes set)
# ----------------------------------------------------------------------------------------------------------------------


def _first_case_for(check, model_class, tmp_path) -> dict | None:
    """The arguments of the first case the suite runs `check` with for `model_class` (None: it never does)."""
    arguments = {"model_class": model_class, "tmp_path": tmp_path}
    for mark in getattr(check, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names = [name.strip() for name in mark.args[0].split(",")]
        cases = [
            dict(zip(names, value if isinstance(value, tuple) else (value,), strict=True))
            for value in mark.args[1]
        ]
        case = next((case for case in cases if case.get("model_class", model_class) is model_class), None)
        if case is None:
            return None
        arguments |= case
    return arguments


def conformance_checks(model_class) -> list:
    """The checks of this suite that run for `model_class`, to be parametrized over by a variant's test."""
    return [
        check
        for name, check in globals().items()
        if name.startswith("test_")
        and {"model_class", "tmp_path", "side", "argument"} >= set(signature(check).parameters)
        and _first_case_for(check, model_class, None) is not None
    ]


def run_conformance_check(check, model_class, tmp_path) -> None:
    """Run one check for `model_class`, with the first case the suite itself runs it with."""
    arguments = _first_case_for(check, model_class, tmp_path)
    check(**{name: arguments[name] for name in signature(check).parameters})


def conformance_variant(model_class, overrides: dict):
    """A test that runs every check of this suite for `model_class` built with the config `overrides` (an option a
    recipe sets): assign it to a `test_...` name in the family's test file."""
    family = family_of(model_class)

    @pytest.mark.parametrize("check", conformance_checks(model_class), ids=lambda check: check.__name__)
    def test_variant(check, monkeypatch, tmp_path):
        tiny = TINY_CONFIGS[family]
        monkeypatch.setitem(TINY_CONFIGS, family, lambda **kw: tiny(**(overrides | kw)))
        config = tiny_model(model_class).config
        assert all(getattr(config, name) == value for name, value in overrides.items())
        run_conformance_check(check, model_class, tmp_path)

    return test_variant
