"""Muon for the weight matrices of a model's body and AdamW for the rest, as the one optimizer the Trainer wants.

`torch.optim.Muon` only takes 2-D parameters and is meant for hidden layers: embeddings, the output head, norms and
biases stay with AdamW (Jordan et al., the modded-nanogpt speedrun). transformers has no such pairing, and its
Trainer, LR scheduler and checkpoints expect a single optimizer object, hence `MuonWithAdamW`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel


class MuonWithAdamW(torch.optim.Optimizer):
    """`torch.optim.Muon` over `muon_groups` and `torch.optim.AdamW` over `adamw_groups`, stepped together.

    The three optimizers share the same param-group dicts, so an LR scheduler (or anything else) that changes this
    optimizer's `param_groups` changes the two it drives. `state_dict` holds both states.
    """

    def __init__(
        self,
        muon_groups: list[dict[str, Any]],
        adamw_groups: list[dict[str, Any]],
        *,
        muon_kwargs: dict[str, Any],
        adamw_kwargs: dict[str, Any],
    ):
        self.muon = torch.optim.Muon(muon_groups, **muon_kwargs)
        self.adamw = torch.optim.AdamW(adamw_groups, **adamw_kwargs)
        # The same dicts, now filled with each optimizer's defaults (add_param_group keeps the dict it is given).
        # AdamW's first: the Trainer logs the first group's rate as `learning_rate`.
        super().__init__(self.adamw.param_groups + self.muon.param_groups, defaults={})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        # Optimizer.load_state_dict gives each optimizer new group dicts (accelerate's prepare calls it too):
        # share them again, or a scheduler would set learning rates that no optimizer reads.
        self.param_groups = self.adamw.param_groups + self.muon.param_groups


def muon_parameter_names(model: PreTrainedModel) -> set[str]:
    """The weights Muon trains: those of the `nn.Linear` layers inside the model's body (`model.base_model`), except
    the output embedding. Embeddings, task heads, norms, biases and recurrent (LSTM) weights are left to AdamW."""
    body = model.base_model
    prefix = "" if body is model else f"{model.base_model_prefix}."
    output_embedding = model.get_output_embeddings()
    excluded = {id(output_embedding.weight)} if output_embedding is not None else set()
    return {
        f"{prefix}{name}.weight"
        for name, module in body.named_modules()
        if isinstance(module, nn.Linear) and id(module.weight) not in excluded
    }


def build_muon_with_adamw(model: PreTrainedModel, args, decay_parameter_names: set[str]) -> MuonWithAdamW:
    """The optimizer of a recipe that sets `muon_learning_rate` (RecipeTrainingArguments): Muon at that rate for the
    body's matrices, AdamW at `learning_rate` with the recipe's betas and epsilon for the rest. Weight decay goes
    where the Trainer puts it (`decay_parameter_names`: everything but biases and norms)."""
    on_muon = muon_parameter_names(model)
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    muon_groups = [{"params": [parameter for name, parameter in trainable if name in on_muon]}]
    adamw_groups = [
        {
            "params": [p for name, p in trainable if name not in on_muon and name in decay_parameter_names],
            "weight_decay": args.weight_decay,
        },
        {
            "params": [
                p for name, p in trainable if name not in on_muon and name not in decay_parameter_names
            ],
            "weight_decay": 0.0,
        },
    ]
    return MuonWithAdamW(
        muon_groups,
        [group for group in adamw_groups if group["params"]],
        muon_kwargs={
            "lr": args.muon_learning_rate,
            "weight_decay": args.weight_decay,
            "momentum": args.muon_momentum,
            "adjust_lr_fn": "original",  # Keller Jordan's scaling, sqrt(max(1, rows / columns))
        },
        adamw_kwargs={
            "lr": args.learning_rate,
            "betas": (args.adam_beta1, args.adam_beta2),
            "eps": args.adam_epsilon,
        },
    )
