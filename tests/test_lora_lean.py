"""Tests for the lean LoRA computation (fwi_teach.models.lean) and the memory account (fwi_teach.training.memory)."""
import copy

import pytest
import torch
from torch import nn

from fwi_teach.models import FrozenStatsBatchNorm2d, LoraSettings, apply_lora, apply_peft_lora
from fwi_teach.models.lean import frozen_batch_norm, lean_conv_supported, merged_lora_conv
from fwi_teach.models.peft_bridge import set_lean
from fwi_teach.training.memory import COMPONENTS, memory_account, measure_step, method_model, saved_tensors_by_op
from fwi_teach.models import InversionNet

torch.set_num_threads(2)
SHAPE = (5, 100, 70)


def _trained_like(model, seed=0):
    """Non-zero adapters and non-trivial BN statistics, as after training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.05)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
    return model


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return InversionNet(width_multiplier=0.25, input_length=SHAPE[1])


def _outputs_and_grads(model, x):
    model.train()
    out = model(x)
    out.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return out.detach(), grads


@pytest.mark.parametrize("apply", [apply_lora, apply_peft_lora], ids=["scratch", "peft"])
@pytest.mark.parametrize("bias", ["none", "all"])
def test_lean_equals_textbook_outputs_and_gradients_in_float64(base, apply, bias):
    x = torch.randn(2, *SHAPE, dtype=torch.float64)
    model = _trained_like(apply(copy.deepcopy(base), LoraSettings(rank=4, alpha=8, bias=bias)).double())
    lean_out, lean_grads = _outputs_and_grads(model, x)
    set_lean(model, False)
    text_out, text_grads = _outputs_and_grads(model, x)
    assert (lean_out - text_out).abs().max() < 1e-12
    assert lean_grads.keys() == text_grads.keys() and len(lean_grads) >= 50
    for name in lean_grads:
        assert torch.allclose(lean_grads[name], text_grads[name], rtol=1e-9, atol=1e-12), name


def test_lean_and_textbook_agree_in_float32_and_bf16():
    torch.manual_seed(1)
    model = _trained_like(apply_peft_lora(InversionNet(width_multiplier=0.25, input_length=SHAPE[1]),
                                          LoraSettings(rank=4)))
    x = torch.randn(2, *SHAPE)
    for dtype, tol in ((None, 1e-4), (torch.bfloat16, 0.1)):
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            lean = model(x).float()
            set_lean(model, False)
            text = model(x).float()
            set_lean(model, True)
        assert (lean - text).abs().max() < tol * text.abs().max()


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(6, 8, (3, 1), stride=(2, 1), padding=(1, 0)),
                                  lambda: nn.ConvTranspose2d(6, 8, 5, stride=2, padding=0, output_padding=1)])
def test_merged_lora_conv_matches_two_branch_layer(make):
    torch.manual_seed(0)
    base = make().double()
    transposed = isinstance(base, nn.ConvTranspose2d)
    a = torch.randn((6, 3) if transposed else (3, 6), dtype=torch.float64)
    a = a[:, :, None, None].expand(-1, -1, *base.kernel_size).contiguous().requires_grad_(True)
    b = torch.randn((3, 8, 1, 1) if transposed else (8, 3, 1, 1), dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 6, 9, 7, dtype=torch.float64)
    conv = nn.functional.conv_transpose2d if transposed else nn.functional.conv2d
    kw = dict(stride=base.stride, padding=base.padding, dilation=base.dilation)
    if transposed:
        kw["output_padding"] = base.output_padding
    expected = base(x) + conv(conv(x, a, **kw), b) * 0.5
    got = merged_lora_conv(x, base, a, b, 0.5)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a_, b_: merged_lora_conv(x, base, a_, b_, 0.5), (a, b))


def test_lean_path_refuses_what_it_cannot_compute():
    assert not lean_conv_supported(nn.Conv2d(4, 4, 3, groups=2))
    assert not lean_conv_supported(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"))
    assert not lean_conv_supported(nn.Conv2d(4, 4, 3), nn.Dropout(0.1))
    assert lean_conv_supported(nn.Conv2d(4, 4, 3), nn.Dropout(0.0))
    with pytest.raises(ValueError, match="textbook form"):
        merged_lora_conv(torch.randn(1, 4, 5, 5), nn.Conv2d(4, 4, 3, groups=2), torch.zeros(1, 2, 3, 3),
                         torch.zeros(4, 1, 1, 1), 1.0)
    with pytest.raises(ValueError, match="eval mode"):
        frozen_batch_norm(torch.randn(2, 3, 4, 4), nn.BatchNorm2d(3).train())
    # dropout in the adapter branch: the layers fall back to the textbook form and still train
    model = apply_lora(InversionNet(width_multiplier=0.25, input_length=SHAPE[1]), LoraSettings(rank=2, dropout=0.1))
    model(torch.randn(2, *SHAPE)).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_frozen_batch_norm_equals_eval_batch_norm_with_a_trained_bias():
    bn = _trained_like(nn.Sequential(nn.BatchNorm2d(3))).double()[0].eval()
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    bn.weight.requires_grad_(False)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    got = frozen_batch_norm(x, bn)
    got.sum().backward()
    lean_grad = bn.bias.grad.clone()
    bn.bias.grad = None
    expected = nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    expected.sum().backward()
    assert torch.allclose(got, expected, atol=1e-12) and torch.allclose(lean_grad, bn.bias.grad)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_lean_lora_saves_fewer_activations_than_fft(precision):
    torch.manual_seed(0)
    base = InversionNet(width_multiplier=0.25, input_length=250)  # the cpu profile's network, at its batch
    saved = {m: measure_step(method_model(m, base, 4), 8, (5, 250, 70), precision=precision)
             for m in ("fft", "lora-scratch", "lora-peft", "lora-peft-textbook")}
    for m in ("lora-scratch", "lora-peft"):
        assert saved[m]["saved_activations"] < 0.8 * saved["fft"]["saved_activations"], (m, saved)
        assert saved[m]["gradients"] < 0.1 * saved["fft"]["gradients"]
        assert saved[m]["optimizer_state"] < 0.1 * saved["fft"]["optimizer_state"]
    # the textbook form keeps more than FFT: the problem the lean path removes
    assert saved["lora-peft-textbook"]["saved_activations"] > saved["fft"]["saved_activations"]
    # AdamW keeps two moments per trainable weight (and a step counter per tensor); gradients one
    assert saved["fft"]["optimizer_state"] == pytest.approx(2 * saved["fft"]["gradients"], rel=1e-3)


def test_memory_account_extrapolates_linearly_and_marks_it():
    torch.manual_seed(0)
    model = method_model("lora-scratch", InversionNet(width_multiplier=0.25, input_length=SHAPE[1]), 2)
    measured = {r.batch_size: r for r in memory_account(model, [2, 3, 6], SHAPE, measure_up_to=6)}
    guessed = {r.batch_size: r for r in memory_account(model, [2, 3, 6], SHAPE, measure_up_to=3)}
    assert measured[6].measured and not guessed[6].measured and guessed[3].measured
    for key in COMPONENTS:
        assert getattr(guessed[6], key) == pytest.approx(getattr(measured[6], key), rel=1e-6), key
    assert guessed[6].total == pytest.approx(sum(getattr(guessed[6], k) for k in COMPONENTS))
    with pytest.raises(ValueError, match="precision"):
        measure_step(model, 2, SHAPE, precision="fp16")
    with pytest.raises(ValueError, match="measure_up_to"):
        memory_account(model, [4], SHAPE, measure_up_to=1)
    with pytest.raises(ValueError, match="method must be one of"):
        method_model("qlora", model, 2)


def test_frozen_stats_batch_norm_lean_switch_changes_only_the_computation():
    bn = nn.BatchNorm2d(3)
    bn.__class__ = FrozenStatsBatchNorm2d
    bn.requires_grad_(False)
    _trained_like(nn.Sequential(bn))
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    lean = bn.train()(x)
    bn.lean = False
    text = bn(x)
    assert not bn.training and torch.allclose(lean, text, atol=1e-6)


def test_saved_tensors_by_op_names_what_the_lean_path_removes():
    torch.manual_seed(0)
    base = InversionNet(width_multiplier=0.25, input_length=SHAPE[1])
    by_op = {m: saved_tensors_by_op(method_model(m, base, 4), 4, SHAPE)
             for m in ("fft", "lora-scratch-textbook", "lora-scratch")}
    # FFT and textbook LoRA keep every batch norm's input; the lean frozen batch norm keeps none
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in base.modules())
    for m in ("fft", "lora-scratch-textbook"):
        bn = by_op[m]["NativeBatchNormBackward0"]
        assert bn["tensors"] >= n_bn and bn["mib"] > 0.3 * sum(v["mib"] for v in by_op[m].values()), m
    assert "NativeBatchNormBackward0" not in by_op["lora-scratch"]
    # the textbook adapter branch keeps more convolution inputs (A(x) for the 1 x 1 layer B)
    conv = {m: ops["ConvolutionBackward0"]["mib"] for m, ops in by_op.items()}
    assert conv["lora-scratch-textbook"] > conv["fft"]
    # the walk finds what the meter counts (the meter also counts the loss's inputs)
    for m, ops in by_op.items():
        meter = measure_step(method_model(m, base, 4), 4, SHAPE)["saved_activations"]
        assert sum(v["mib"] for v in ops.values()) == pytest.approx(meter, rel=0.02), m
