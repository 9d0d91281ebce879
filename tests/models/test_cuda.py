"""The GPU paths: sdpa on CUDA, bf16 autocast, the flash-attention kernel, torch.compile, cached generation on the
GPU, and the real pretraining script under the bf16 single-GPU accelerate config.

CI has no GPU, so these are skipped there; on a CUDA machine run `python -m pytest tests/models/test_cuda.py`.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import accelerate_launch
from model_specs import (
    ATTENTION_FAMILIES,
    HEADS,
    family_of,
    kind_of,
    main_output,
    make_labels,
    padded_batch,
    random_input_ids,
    tiny_model,
)

from lmrecipes.models.lstm_lm import LSTMLMForCausalLM
from lmrecipes.models.mini_bert import MiniBertForMaskedLM
from lmrecipes.models.mini_gpt import MiniGPTForCausalLM

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ATTENTION_HEADS = [cls for cls in HEADS if family_of(cls) in ATTENTION_FAMILIES]
LANGUAGE_MODELS = [LSTMLMForCausalLM, MiniBertForMaskedLM, MiniGPTForCausalLM]


def ids(model_class: type) -> str:
    return model_class.__name__


def right_padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    input_ids, attention_mask = padded_batch([17, 24, 9, 24], 24, "right")
    return input_ids.cuda(), attention_mask.cuda()


@pytest.mark.parametrize("model_class", ATTENTION_HEADS, ids=ids)
def test_sdpa_and_eager_agree_on_cuda(model_class):
    input_ids, attention_mask = right_padded_batch()
    outputs = {}
    for implementation in ("sdpa", "eager"):
        model = tiny_model(model_class, attn_implementation=implementation).cuda()
        with torch.no_grad():
            outputs[implementation] = main_output(
                model_class, model(input_ids, attention_mask=attention_mask)
            )
    if kind_of(model_class) == "sequence_classification":
        torch.testing.assert_close(outputs["sdpa"], outputs["eager"], atol=1e-4, rtol=1e-3)
    else:
        real = attention_mask.bool()
        torch.testing.assert_close(outputs["sdpa"][real], outputs["eager"][real], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("model_class", LANGUAGE_MODELS, ids=ids)
def test_bf16_autocast_loss_and_gradients_follow_fp32(model_class):
    input_ids, attention_mask = right_padded_batch()
    labels = make_labels(model_class, input_ids.cpu())["labels"].cuda()
    labels[attention_mask == 0] = -100
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = tiny_model(model_class).cuda().train()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = model(input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        # autocast keeps the master weights, and so their gradients, in fp32
        assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
        gradient = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[dtype] = (loss.item(), gradient)
    (loss32, grad32), (loss16, grad16) = results[torch.float32], results[torch.bfloat16]
    assert math.isfinite(loss16) and abs(loss16 - loss32) < 0.02 * loss32
    assert torch.isfinite(grad16).all()
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0).item()
    assert cosine > 0.99, f"bf16 gradients point elsewhere than fp32 ones (cosine {cosine:.4f})"


@pytest.mark.parametrize("model_class", [MiniGPTForCausalLM, MiniBertForMaskedLM], ids=ids)
def test_unpadded_batches_run_on_the_flash_attention_kernel(model_class):
    # The flash kernel takes no attention mask: this passes only if an unpadded batch reaches
    # scaled_dot_product_attention with no materialised mask (is_causal for the decoder).
    from torch.nn.attention import SDPBackend, sdpa_kernel

    input_ids = random_input_ids(4, 32).cuda()
    model = tiny_model(model_class).cuda().to(torch.bfloat16)
    with torch.no_grad():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            flash = model(input_ids).logits.float()
        with sdpa_kernel([SDPBackend.MATH]):
            math_backend = model(input_ids).logits.float()
    torch.testing.assert_close(flash, math_backend, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("model_class", [MiniGPTForCausalLM, MiniBertForMaskedLM], ids=ids)
def test_torch_compile_gives_the_eager_loss_and_gradients(model_class):
    input_ids, attention_mask = right_padded_batch()
    labels = input_ids.clone()
    labels[attention_mask == 0] = -100
    results = []
    for compiled in (False, True):
        model = tiny_model(model_class).cuda().train()
        runnable = torch.compile(model) if compiled else model
        loss = runnable(input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        results.append((loss.detach(), {name: p.grad for name, p in model.named_parameters()}))
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = results
    torch.testing.assert_close(compiled_loss, eager_loss, atol=1e-4, rtol=1e-4)
    for name, gradient in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], gradient, atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.parametrize("model_class", [MiniGPTForCausalLM, LSTMLMForCausalLM], ids=ids)
def test_greedy_generation_on_cuda_with_cache_equals_without(model_class):
    model = tiny_model(model_class).cuda()
    prompt = random_input_ids(2, 5).cuda()
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}
    cached = model.generate(prompt, use_cache=True, **kwargs)
    uncached = model.generate(prompt, use_cache=False, **kwargs)
    assert cached.device.type == "cuda" and cached.shape == (2, 17)
    assert torch.equal(cached, uncached)


def test_pretraining_script_trains_in_bf16_on_one_gpu(tmp_path):
    output_dir = tmp_path / "gpt-gpu"
    result = accelerate_launch(
        "pretrain.py", "recipes/mini_gpt/tiny.yaml", "--output_dir", str(output_dir), config="single_gpu.yaml"
    )
    assert "training on cuda:0, 1 process(es), mixed precision: bf16" in result.stdout + result.stderr
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    # autocast trains fp32 master weights: the checkpoint is saved in fp32
    assert json.loads((output_dir / "config.json").read_text())["dtype"] == "float32"
