"""How much arithmetic a training step does and how much the hardware could do: FLOPs per token and matmul peaks.

The Trainer logs and the speed benchmark share these, so that model FLOPs utilisation (MFU) means the same thing
in both: training FLOPs per token = 6 x N_matmul + attention, where N_matmul counts the weights a token is
multiplied by (every nn.Linear, a tied output head included, and the LSTM's gate weights) and attention adds
12 x layers x sequence x hidden for bidirectional attention, half of it for causal attention. A masked LM with
`sparse_prediction` runs its head at the labelled positions only, so its head counts for that fraction of tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.utils.mkldnn
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from lmrecipes.families import FAMILIES


def matmul_weight_count(model: nn.Module) -> int:
    """The weights a token is multiplied by once per forward pass (N_matmul). Of an adaptive softmax only the head
    counts: its tail clusters see only the positions whose target is a rarer word."""
    tails = {
        id(linear)
        for adaptive in model.modules()
        if isinstance(adaptive, nn.AdaptiveLogSoftmaxWithLoss)
        for linear in adaptive.tail.modules()
    }
    count = 0
    for module in model.modules():
        if id(module) in tails:
            continue
        if isinstance(module, (nn.Linear, Conv1D)):
            count += module.weight.numel()  # a tied head counts: it is a matmul, not a look-up
        elif isinstance(module, nn.LSTM):
            count += sum(p.numel() for name, p in module.named_parameters() if name.startswith("weight"))
    return count


def attention_flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs per token of the attention scores and weighted sums (q k^T and p v, forward and backward) of
    one of our attention families; 0 for the LSTM and for models that are not ours."""
    family = FAMILIES.get(getattr(config, "model_type", None))
    if family is None or family.is_recurrent:
        return 0.0
    per_layer = 12 * seq_len * config.hidden_size
    if family.objective == "causal":
        per_layer /= 2  # each token attends to the tokens before it: half the score matrix on average
    return per_layer * config.num_hidden_layers


def sparse_head_weight_count(model: nn.Module) -> int:
    """The matmul weights that run only at labelled positions: the MLM head of a model with `sparse_prediction`."""
    if not getattr(getattr(model, "config", None), "sparse_prediction", False) or not hasattr(
        model, "lm_head"
    ):
        return 0
    return matmul_weight_count(model.lm_head)


def training_flops_per_token(
    model: PreTrainedModel,
    seq_len: int,
    matmul_weights: int | None = None,
    labelled_fraction: float = 1.0,
    sparse_head_weights: int | None = None,
) -> float:
    """Forward + backward FLOPs per token for a batch of `seq_len`-token rows. `labelled_fraction`: the share of
    positions with a label, which is where a sparse-prediction head runs. `matmul_weights` and `sparse_head_weights`:
    cached counts, for a caller that asks at every step."""
    weights = matmul_weight_count(model) if matmul_weights is None else matmul_weights
    if labelled_fraction < 1:
        head_weights = sparse_head_weight_count(model) if sparse_head_weights is None else sparse_head_weights
        weights -= (1 - labelled_fraction) * head_weights
    return 6 * weights + attention_flops_per_token(model.config, seq_len)


def measured_matmul_peaks(
    device: torch.device,
    dtype: torch.dtype,
    size: int = 2048,
    repeats: int = 10,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """FLOP/s of the fastest of `repeats` square `size` matmuls, per matmul backend, with torch's current threads.

    The best run, not the median: the peak is what the hardware can do; on a shared machine the slower runs measure
    the neighbours. Backends: `torch.matmul` (on x86 CPUs MKL's sgemm, which nn.Linear uses), and on CPU in fp32
    also oneDNN's (through an mkldnn nn.Linear; nn.LSTM's kernels are oneDNN's). On AMD CPUs MKL keeps to its AVX2
    kernels, so oneDNN can be faster; the hardware's peak is the higher of the two. `clock`: time.perf_counter, or
    time.process_time to leave out the time other processes hold the cores.
    """
    generator = torch.Generator(device="cpu").manual_seed(0)
    left = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    right = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)

    def seconds(matmul: Callable[[], object]) -> float:
        if device.type != "cpu":
            torch.accelerator.synchronize()
        start = clock()
        matmul()
        if device.type != "cpu":
            torch.accelerator.synchronize()
        return clock() - start

    def best(matmul: Callable[[], object]) -> float:
        for _ in range(2):  # warm-up: thread pool, kernel selection, clocks
            matmul()
        return 2 * size**3 / min(seconds(matmul) for _ in range(repeats))

    peaks = {"torch.matmul": best(lambda: torch.matmul(left, right))}
    if device.type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available():
        # skip_init: no draw from the global random stream, which a training run's dropout is using.
        linear = torch.nn.utils.skip_init(nn.Linear, size, size, bias=False).eval()
        onednn_linear, onednn_input = torch.utils.mkldnn.to_mkldnn(linear), left.to_mkldnn()
        with torch.no_grad():
            peaks["oneDNN matmul"] = best(lambda: onednn_linear(onednn_input))
    return peaks
