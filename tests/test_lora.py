"""Tests for fwi_teach.models.lora: from-scratch LoRA layers, apply_lora, and the peft path with ConvTranspose2d."""
import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fwi_teach.models import (FrozenStatsBatchNorm2d, LoRAConv2d, LoRAConvTranspose2d, LoraSettings, apply_lora,
                            apply_peft_lora, load_peft_adapter, lora_state_dict, merge_lora, peft_lora_config,
                            set_lora_train_mode, trainable_parameter_report)
from fwi_teach.models import InversionNet, count_parameters

torch.set_num_threads(2)
SMALL = dict(width_multiplier=0.25, input_length=250)


def _lora_layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, (LoRAConv2d, LoRAConvTranspose2d))}


def _randomise_b(model, seed=0):
    """Give every adapter a non-zero B so the adapters change the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in _lora_layers(model).values():
            m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=gen) * 0.05)


@pytest.fixture(scope="module")
def base_and_input():
    torch.manual_seed(0)
    base = InversionNet(**SMALL)
    # non-trivial BN statistics, as in a trained network
    with torch.no_grad():
        for m in base.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return base.eval(), torch.randn(2, 5, 250, 70)


@pytest.mark.parametrize("make", [
    lambda: nn.Conv2d(6, 8, (3, 1), stride=(2, 1), padding=(1, 0)),
    lambda: nn.Conv2d(6, 8, (8, 9), padding=0),
    lambda: nn.Conv2d(6, 8, 1),
    lambda: nn.ConvTranspose2d(6, 8, 4, stride=2, padding=1),
    lambda: nn.ConvTranspose2d(6, 8, 5, stride=2, padding=0, output_padding=1),
])
def test_layer_delta_weight_merge_and_unmerge(make):
    torch.manual_seed(0)
    base = make()
    cls = LoRAConv2d if isinstance(base, nn.Conv2d) else LoRAConvTranspose2d
    layer = cls(base, rank=3, alpha=6.0)
    x = torch.randn(2, 6, 9, 9)
    original = base.weight.detach().clone()
    assert torch.equal(layer(x), base(x))  # B = 0 at initialisation
    nn.init.normal_(layer.lora_B.weight)
    with torch.no_grad():
        y = layer(x)
        # the delta weight reproduces the adapter branch as one convolution of the base's shape
        fn = F.conv2d if cls is LoRAConv2d else F.conv_transpose2d
        extra = {} if cls is LoRAConv2d else {"output_padding": base.output_padding}
        y_delta = fn(x, base.weight + layer.delta_weight(), base.bias, base.stride, base.padding, **extra)
        torch.testing.assert_close(y_delta, y, atol=1e-5, rtol=0)
        assert layer.delta_weight().shape == base.weight.shape
        layer.merge()
        torch.testing.assert_close(layer(x), y, atol=1e-5, rtol=0)
        with pytest.raises(RuntimeError):
            layer.merge()
        layer.unmerge()
    torch.testing.assert_close(base.weight, original, atol=1e-6, rtol=0)
    assert layer.scaling == 2.0 and not base.weight.requires_grad


def test_layer_rejects_bad_arguments():
    with pytest.raises(TypeError, match="ConvTranspose2d"):
        LoRAConvTranspose2d(nn.Conv2d(2, 2, 3), 2, 2)
    with pytest.raises(ValueError, match="rank"):
        LoRAConv2d(nn.Conv2d(2, 2, 3), 0, 2)
    with pytest.raises(ValueError, match="groups"):
        LoRAConv2d(nn.Conv2d(4, 4, 3, groups=2), 2, 2)
    with pytest.raises(ValueError, match="bias"):
        LoraSettings(bias="some")


def test_full_width_trainable_parameter_counts():
    base = InversionNet()
    scratch = trainable_parameter_report(apply_lora(copy.deepcopy(base)), base)
    peft_model = apply_peft_lora(copy.deepcopy(base))
    peft_report = trainable_parameter_report(peft_model, base)
    print(f"rank 16, all 25 convs + 5 deconvs: {scratch['trainable']:,} trainable of "
          f"{scratch['full_finetune']:,} ({scratch['percent_of_full']:.3f} %, "
          f"{scratch['reduction_percent']:.2f} % fewer than full fine-tuning)")
    assert scratch["full_finetune"] == 24_409_123
    assert scratch["trainable"] == scratch["lora"] == 1_148_480
    assert scratch["reduction_percent"] == pytest.approx(95.295, abs=1e-3)
    assert peft_report["trainable"] == scratch["trainable"]
    assert peft_report["full_finetune"] == 24_409_123  # also without base_model
    assert trainable_parameter_report(peft_model)["full_finetune"] == 24_409_123
    with_bn = trainable_parameter_report(apply_lora(copy.deepcopy(base), LoraSettings(train_batchnorm=True)))
    bn_channels = [32, 64, 64, 64, 64, 128, 128, 128, 128, 256, 256, 256, 256, 512,  # encoder
                   512, 512, 256, 256, 128, 128, 64, 64, 32, 32, 1]  # decoder
    assert with_bn["other_trainable"] == 2 * sum(bn_channels) == 8642  # scale and shift


def test_apply_lora_targets_and_freezing(base_and_input):
    base, _ = base_and_input
    model = apply_lora(copy.deepcopy(base))
    layers = _lora_layers(model)
    assert len(layers) == 25
    assert sum(isinstance(m, LoRAConvTranspose2d) for m in layers.values()) == 5
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    one = apply_lora(copy.deepcopy(base), LoraSettings(target=["convblock8", "deconv1_1.layers.0"]))
    assert sorted(_lora_layers(one)) == ["convblock8.layers.0", "deconv1_1.layers.0"]
    assert len(_lora_layers(apply_lora(copy.deepcopy(base), LoraSettings(target="decoder")))) == 11
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model)
    with pytest.raises(ValueError, match="convblock9"):
        apply_lora(copy.deepcopy(base), LoraSettings(target="convblock9"))
    biased = apply_lora(copy.deepcopy(base), LoraSettings(bias="all"))
    assert biased.deconv6.layers[0].base.bias.requires_grad and biased.deconv6.layers[1].bias.requires_grad


def test_initial_output_equals_base_for_both_implementations(base_and_input):
    base, x = base_and_input
    with torch.no_grad():
        y0 = base(x)
        assert torch.equal(apply_lora(copy.deepcopy(base)).eval()(x), y0)
        assert torch.equal(apply_peft_lora(copy.deepcopy(base)).eval()(x), y0)


def test_scratch_and_peft_agree_merged_and_unmerged(base_and_input):
    base, x = base_and_input
    scratch = apply_lora(copy.deepcopy(base)).eval()
    _randomise_b(scratch)
    peft_model = apply_peft_lora(copy.deepcopy(base)).eval()
    inner = peft_model.base_model.model
    for name, layer in _lora_layers(scratch).items():
        target = inner.get_submodule(name)
        target.lora_A["default"].weight.data.copy_(layer.lora_A.weight)
        target.lora_B["default"].weight.data.copy_(layer.lora_B.weight)
    assert "lora.ConvTranspose2d" in repr(inner.deconv2_1.layers[0])
    with torch.no_grad():
        y0, y_scratch, y_peft = base(x), scratch(x), peft_model(x)
        assert (y_scratch - y0).abs().max() > 1e-3  # the adapters do change the output
        torch.testing.assert_close(y_peft, y_scratch, atol=1e-6, rtol=0)
        peft_model.merge_adapter()
        torch.testing.assert_close(peft_model(x), y_scratch, atol=1e-5, rtol=0)
        merged = merge_lora(scratch)
        torch.testing.assert_close(merged(x), y_scratch, atol=1e-5, rtol=0)
    plain = InversionNet(**SMALL).eval()
    plain.load_state_dict(merged.state_dict())  # merged model has the original names again
    with torch.no_grad():
        torch.testing.assert_close(plain(x), y_scratch, atol=1e-5, rtol=0)


@pytest.mark.parametrize("train_batchnorm", [False, True])
def test_gradients_and_batchnorm_statistics(base_and_input, train_batchnorm):
    base, x = base_and_input
    model = apply_lora(copy.deepcopy(base), LoraSettings(rank=4, train_batchnorm=train_batchnorm))
    _randomise_b(model)
    set_lora_train_mode(model)
    before = model.convblock5_1.layers[1].running_mean.clone()
    model(x).mean().backward()
    for name, p in model.named_parameters():
        should = "lora_" in name or (train_batchnorm and ".layers.1." in name)
        assert (p.grad is not None and p.grad.abs().sum() > 0) == should, name
    bn = model.convblock5_1.layers[1]
    assert isinstance(bn, FrozenStatsBatchNorm2d) != train_batchnorm
    assert bn.training == train_batchnorm
    assert torch.equal(bn.running_mean, before) != train_batchnorm


def test_set_lora_train_mode_freezes_hand_frozen_batchnorm():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    model[1].requires_grad_(False)
    set_lora_train_mode(model)
    assert model.training and not model[1].training


def test_scratch_adapter_state_dict_round_trip(base_and_input):
    base, x = base_and_input
    settings = LoraSettings(rank=4, train_batchnorm=True)
    trained = apply_lora(copy.deepcopy(base), settings)
    _randomise_b(trained)
    trained.train()
    with torch.no_grad():
        trained(x)  # updates BN running statistics
    state = lora_state_dict(trained)
    assert all("lora_" in k or ".layers.1." in k for k in state)
    fresh = apply_lora(copy.deepcopy(base), settings)
    result = fresh.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), trained.eval()(x))


@pytest.mark.parametrize("train_batchnorm", [False, True])
def test_peft_save_and_reload_round_trip(tmp_path, base_and_input, train_batchnorm):
    base, x = base_and_input
    settings = LoraSettings(rank=4, train_batchnorm=train_batchnorm)
    model = apply_peft_lora(copy.deepcopy(base), settings)
    report = trainable_parameter_report(model)
    assert report == trainable_parameter_report(apply_lora(copy.deepcopy(base), settings)) | {"total": report["total"]}
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    for _ in range(2):
        optimiser.zero_grad()
        model(x).square().mean().backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        expected = model(x)
        assert (expected - base(x)).abs().max() > 1e-4
    model.save_pretrained(str(tmp_path))
    assert (tmp_path / "adapter_config.json").exists()
    reloaded = load_peft_adapter(copy.deepcopy(base), tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(x), expected)
    with pytest.raises(FileNotFoundError, match="adapter_config"):
        load_peft_adapter(copy.deepcopy(base), tmp_path / "nowhere")


def test_peft_config_without_model_targets_inversionnet_names():
    config = peft_lora_config(LoraSettings(target="encoder"))
    assert len(config.target_modules) == 14 and "convblock8.layers.0" in config.target_modules
    assert nn.ConvTranspose2d in config._custom_modules
    pattern = peft_lora_config(LoraSettings(target=["deconv1_1", "convblock8.layers.0"])).target_modules
    assert [n for n in ("deconv1_1.layers.0", "convblock8.layers.0", "deconv1_2.layers.0", "deconv1_1.layers.1")
            if re.fullmatch(pattern, n)] == ["deconv1_1.layers.0", "convblock8.layers.0"]
    model = apply_peft_lora(InversionNet(**SMALL), LoraSettings(target=["deconv1_1", "convblock1"]))
    adapted = [n for n, p in model.named_parameters() if "lora_A" in n]
    assert len(adapted) == 2 and count_parameters(model) > 0
