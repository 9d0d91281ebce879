"""MuonWithAdamW: Muon for the body's matrices, AdamW for the rest, behaving as one optimizer for the Trainer."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import TINY_SIZES
from transformers import get_scheduler

from lmrecipes.models.lstm_lm import LSTMLMConfig, LSTMLMForCausalLM
from lmrecipes.models.mini_bert import MiniBertConfig, MiniBertForSequenceClassification
from lmrecipes.models.mini_gpt import MiniGPTConfig, MiniGPTForCausalLM
from lmrecipes.optimization import MuonWithAdamW, build_muon_with_adamw, muon_parameter_names
from lmrecipes.training import RecipeTrainingArguments


def tiny_gpt(seed: int = 0) -> MiniGPTForCausalLM:
    torch.manual_seed(seed)
    no_dropout = dict(
        hidden_dropout=0.0, attention_dropout=0.0, embedding_dropout=0.0
    )  # steps compare exactly
    return MiniGPTForCausalLM(
        MiniGPTConfig(vocab_size=64, max_position_embeddings=16, **TINY_SIZES, **no_dropout)
    )


def test_muon_takes_the_bodys_linear_weights_and_nothing_else():
    gpt = tiny_gpt()
    on_muon = muon_parameter_names(gpt)
    assert on_muon == {
        f"model.h.{layer}.{name}.weight"
        for layer in range(TINY_SIZES["num_hidden_layers"])
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    }  # not wte, wpe, the tied lm_head, LayerNorms or biases

    bert = MiniBertForSequenceClassification(MiniBertConfig(vocab_size=64, num_labels=3, **TINY_SIZES))
    bert_muon = muon_parameter_names(bert)
    assert not any(name.startswith("classifier") for name in bert_muon)  # the task head stays with AdamW
    assert all(name.startswith("model.") and name.endswith(".weight") for name in bert_muon)
    assert {name for name, p in bert.named_parameters() if "embeddings" in name} & bert_muon == set()

    lstm = LSTMLMForCausalLM(
        LSTMLMConfig(vocab_size=64, embedding_size=16, hidden_size=16, num_hidden_layers=1)
    )
    assert muon_parameter_names(lstm) == set()  # recurrent weights and the tied head: AdamW


def adamw_and_muon_separately(model, args, decayed):
    """The reference: torch.optim.Muon and torch.optim.AdamW built and stepped on their own."""
    on_muon = muon_parameter_names(model)
    named = dict(model.named_parameters())
    muon = torch.optim.Muon(
        [named[name] for name in sorted(on_muon)],
        lr=args.muon_learning_rate,
        weight_decay=args.weight_decay,
        momentum=args.muon_momentum,
        adjust_lr_fn="original",
    )
    adamw = torch.optim.AdamW(
        [
            {"params": [p for n, p in named.items() if n not in on_muon and n in decayed]},
            {
                "params": [p for n, p in named.items() if n not in on_muon and n not in decayed],
                "weight_decay": 0.0,
            },
        ],
        lr=args.learning_rate,
        weight_decay=args.weight_decay,
    )
    return muon, adamw


def train_steps(model, optimizers, steps: int, scheduler=None) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        batch = torch.randint(0, 64, (4, 16), generator=generator)
        model(input_ids=batch, labels=batch).loss.backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
        if scheduler is not None:
            scheduler.step()


def args_for_muon(**changes) -> RecipeTrainingArguments:
    fields = dict(
        output_dir="unused", learning_rate=3e-3, muon_learning_rate=0.02, weight_decay=0.1, use_cpu=True
    )
    return RecipeTrainingArguments(**(fields | changes))


def test_steps_exactly_as_muon_and_adamw_side_by_side():
    args = args_for_muon()
    ours, reference = tiny_gpt(), tiny_gpt()
    decayed = {name for name, _ in ours.named_parameters() if not name.endswith("bias") and "ln" not in name}
    optimizer = build_muon_with_adamw(ours, args, decayed)
    assert isinstance(optimizer, MuonWithAdamW)
    train_steps(ours, [optimizer], steps=3)
    train_steps(reference, adamw_and_muon_separately(reference, args, decayed), steps=3)
    for (name, mine), theirs in zip(ours.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0, msg=name)


def test_the_schedule_scales_both_learning_rates():
    model = tiny_gpt()
    optimizer = build_muon_with_adamw(model, args_for_muon(), decay_parameter_names=set())
    # accelerate's prepare reloads the state, before the schedule exists
    optimizer.load_state_dict(optimizer.state_dict())
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=4)
    train_steps(model, [optimizer], steps=2, scheduler=scheduler)
    assert [group["lr"] for group in optimizer.adamw.param_groups] == pytest.approx([3e-3 / 2])
    assert [group["lr"] for group in optimizer.muon.param_groups] == pytest.approx([0.02 / 2])
    assert scheduler.get_last_lr()[0] == pytest.approx(3e-3 / 2)  # what the Trainer logs as learning_rate


def test_state_dict_resumes_both_optimizers():
    args = args_for_muon()
    uninterrupted, resumed = tiny_gpt(), tiny_gpt()
    first = build_muon_with_adamw(uninterrupted, args, set())
    train_steps(uninterrupted, [first], steps=2)
    saved_weights, saved_state = copy.deepcopy(uninterrupted.state_dict()), copy.deepcopy(first.state_dict())
    train_steps(uninterrupted, [first], steps=2)

    resumed.load_state_dict(saved_weights)
    second = build_muon_with_adamw(resumed, args, set())
    second.load_state_dict(saved_state)
    assert second.muon.state and second.adamw.state  # momentum and Adam moments came back
    train_steps(resumed, [second], steps=2)
    for mine, theirs in zip(resumed.parameters(), uninterrupted.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
