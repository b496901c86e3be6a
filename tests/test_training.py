"""Tests for fwi_teach.training: fit / evaluate / predict, checkpoints, resume, determinism, LoRA, memory."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from fwi_teach.models import LoraSettings, apply_lora
from fwi_teach.evaluation.metrics import evaluate_metrics
from fwi_teach.training import TrainConfig, evaluate, fit, load_weights, predict


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The models here are tiny: threads buy nothing, and on a busy 2-core machine
    # two OpenMP threads per process made these tests about 4x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyNet(nn.Module):
    """Five 'shots' of 16 x 16 in, one 16 x 16 velocity map in [-1, 1] out."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(5, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.1)  # draws from the global RNG: resume must restore it
        self.conv2 = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        return torch.tanh(self.conv2(self.drop(F.leaky_relu(self.bn(self.conv1(x)), 0.2))))


def make_data(n, seed, sign=1.0):
    """Targets are a fixed local function of the input, so TinyNet can fit them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, 16, 16, generator=g)
    return TensorDataset(x, sign * torch.tanh(0.6 * x[:, :1] - 0.4 * x[:, 1:2]))


def make_model(seed=0):
    torch.manual_seed(seed)
    return TinyNet()


def config(**kw):
    base = dict(epochs=4, batch_size=4, lr=1e-2, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Interrupting(Dataset):
    """Wraps a dataset and raises KeyboardInterrupt after ``limit`` item reads (a killed job)."""

    def __init__(self, base, limit):
        self.base, self.limit, self.reads = base, limit, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads > self.limit:
            raise KeyboardInterrupt("simulated interruption")
        return self.base[i]


def test_overfits_tiny_dataset_and_reports_measurements():
    train = make_data(16, 0)
    model = make_model()
    result = fit(model, train, make_data(8, 1), config(epochs=12))
    losses = [h["train_loss"] for h in result.history]
    assert [h["epoch"] for h in result.history] == list(range(1, 13))
    assert losses[-1] < losses[0] / 4, losses  # falls by more than 4x
    assert result.trainable_params == result.total_params == sum(p.numel() for p in model.parameters())
    assert result.memory_kind == "tensor_accounting" and result.device == "cpu"
    assert result.amp == "off"  # amp="auto" is float32 on CPU
    assert result.peak_memory_mb == pytest.approx(sum(result.memory_breakdown_mb.values()))
    assert result.memory_breakdown_mb["parameters_and_buffers"] * 2 ** 20 == pytest.approx(
        sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]))
    assert result.memory_breakdown_mb["optimizer_state"] > 2 * result.memory_breakdown_mb["gradients"] > 0
    assert result.memory_breakdown_mb["saved_activations"] > 0
    assert result.rss_peak_delta_mb is not None and result.rss_peak_delta_mb >= 0
    assert all(h["steps"] == 4 and h["samples"] == 16 for h in result.history)
    train_time = sum(h["train_time_s"] for h in result.history)
    assert result.time_per_step_s == pytest.approx(train_time / 48)
    assert result.samples_per_s == pytest.approx(16 * 12 / train_time)
    assert result.checkpoint_path is None and result.steps_this_call == 48
    json.dumps(result.to_dict())  # JSON-serialisable
    # the model holds the best epoch, and its metrics are the recorded ones
    best = result.history[result.best_epoch - 1]
    assert best["val_loss"] == min(h["val_loss"] for h in result.history) == result.best_val_loss
    assert evaluate(model, make_data(8, 1))["mae"] == pytest.approx(best["val_mae"], rel=1e-6)


def test_same_seed_gives_identical_weights_and_seed_matters():
    train = make_data(12, 0)
    runs = [make_model(5) for _ in range(3)]
    fit(runs[0], train, config=config(epochs=2, seed=3))
    fit(runs[1], train, config=config(epochs=2, seed=3))
    fit(runs[2], train, config=config(epochs=2, seed=4))
    assert same_weights(runs[0], runs[1])
    assert not same_weights(runs[0], runs[2])  # another seed shuffles differently


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    train, val = make_data(12, 0), make_data(6, 1)
    reference = make_model()
    ref = fit(reference, train, val, config(epochs=4, checkpoint_dir=tmp_path / "ref"))

    interrupted = make_model()
    # 12 reads per epoch without preloading: die in the middle of epoch 3
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, Interrupting(train, limit=30), val,
            config(epochs=4, checkpoint_dir=tmp_path / "run", preload=False))
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 2
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.pt", "last.pt"]

    resumed_model = make_model(seed=123)  # a fresh process would build its model anew
    resumed = fit(resumed_model, train, val, config(epochs=4, checkpoint_dir=tmp_path / "run"))
    assert resumed.resumed_from_epoch == 2 and resumed.steps_this_call == 6
    assert same_weights(resumed_model, reference)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in ref.history]
    assert resumed.best_epoch == ref.best_epoch
    last_ref = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)["model"]
    last_run = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(last_ref[k], last_run[k]) for k in last_ref)

    # a finished run resumes to its end without training
    again = make_model(seed=7)
    done = fit(again, train, val, config(epochs=4, checkpoint_dir=tmp_path / "run"))
    assert done.steps_this_call == 0 and same_weights(again, reference)


def test_best_checkpoint_holds_best_epoch_not_last(tmp_path):
    # The validation targets have the opposite sign: the better the fit of the
    # training set, the worse the validation loss, so epoch 1 is the best.
    model = make_model()
    result = fit(model, make_data(16, 0), make_data(8, 1, sign=-1.0), config(epochs=4, checkpoint_dir=tmp_path))
    val_losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == 1 + val_losses.index(min(val_losses)) == 1
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert best["epoch"] == 1 and last["epoch"] == 4
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in best["model"].items())
    assert not all(torch.equal(v, model.state_dict()[k]) for k, v in last["model"].items())
    assert result.checkpoint_path == str(tmp_path / "best.pt")
    loaded = load_weights(make_model(9), tmp_path / "best.pt")
    assert same_weights(loaded, model)


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    train = make_data(8, 0)
    fit(make_model(), train, config=config(epochs=1, checkpoint_dir=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
    before = (tmp_path / "last.pt").read_bytes()

    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        real_save({"half": "written"}, f)  # something reaches the disk, then the write dies
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        fit(make_model(), train, config=config(epochs=2, checkpoint_dir=tmp_path))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary file left
    assert (tmp_path / "last.pt").read_bytes() == before  # the previous checkpoint is intact


def test_lora_model_trains_only_adapters():
    model = apply_lora(make_model(), LoraSettings(rank=2))
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    adapters = {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}
    n_adapter = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    result = fit(model, make_data(12, 0), make_data(4, 1), config(epochs=2))
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # base weights and BN statistics unchanged
    assert any(not torch.equal(after[k], v) for k, v in adapters.items())  # adapters learned
    assert result.trainable_params == n_adapter < result.total_params
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]

    fft = fit(make_model(), make_data(12, 0), config=config(epochs=1))
    lora_mb, fft_mb = result.memory_breakdown_mb, fft.memory_breakdown_mb
    assert lora_mb["gradients"] < fft_mb["gradients"] and lora_mb["optimizer_state"] < fft_mb["optimizer_state"]


class FirstChannel(nn.Module):
    """Predicts channel 0 of the input: the 'hand-built' prediction."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, :1] + 0 * self.dummy


def test_evaluate_and_predict_hand_built_predictions():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 5, 12, 12, generator=g) * 1.6 - 0.8
    target = (x[:, :1] + 0.1).clamp(-1, 1)
    target[0] = x[0, :1] - 0.1
    ds = TensorDataset(x, target)
    metrics = evaluate(FirstChannel(), ds, batch_size=3)  # 3 does not divide 7
    expected = evaluate_metrics(x[:, :1], target)
    assert metrics["n_samples"] == 7
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert metrics["mae"] == pytest.approx(float((x[:, :1] - target).abs().mean()), rel=1e-6)
    assert metrics["mae_mps"] == pytest.approx(1500 * metrics["mae"])
    assert metrics["ssim"] < 1
    assert torch.equal(predict(FirstChannel(), x, batch_size=2), x[:, :1])
    assert torch.equal(predict(FirstChannel(), ds, batch_size=4), x[:, :1])
    assert evaluate(FirstChannel(), TensorDataset(x, x[:, :1]))["ssim"] == pytest.approx(1.0)


def test_errors_are_clear():
    model, train = make_model(), make_data(4, 0)
    with pytest.raises(ValueError, match="train_dataset is empty"):
        fit(model, TensorDataset(torch.zeros(0, 5, 16, 16), torch.zeros(0, 1, 16, 16)), config=config())
    with pytest.raises(ValueError, match=r"loss='l3'; expected one of"):
        TrainConfig(loss="l3")
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="batch_size="):
            TrainConfig(batch_size=bad)
    with pytest.raises(ValueError, match="lr="):
        TrainConfig(lr=0)
    edited = config()
    edited.batch_size = 0  # fields edited after construction are checked by fit
    with pytest.raises(ValueError, match="batch_size=0; expected an integer >= 1"):
        fit(model, train, config=edited)
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device"):
        fit(model, train, config=config(amp="fp16", device="cpu"))
    frozen = make_model().requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter with requires_grad"):
        fit(frozen, train, config=config())
    with pytest.raises(ValueError, match=r"model output has shape \(4, 1, 16, 16\).*\(4, 1, 8, 8\)"):
        fit(model, TensorDataset(train.tensors[0], torch.zeros(4, 1, 8, 8)), config=config(epochs=1))
    with pytest.raises(TypeError, match=r"\(seismic, velocity\) pairs"):
        fit(model, TensorDataset(train.tensors[0]), config=config(epochs=1))
    with pytest.raises(ValueError, match="expected \\(N, shots, time, receivers\\)"):
        predict(model, torch.zeros(5, 16, 16))
    with pytest.raises(ValueError, match="batch_size=0"):
        evaluate(model, train, batch_size=0)


def test_a_resumed_run_keeps_the_numerics_it_began_with_where_they_are_auto(tmp_path, capsys):
    train, val = make_data(12, 0), make_data(6, 1)
    began = dict(memory_format="contiguous", amp="off", compile="off")  # eager CPU "auto" would pick channels_last
    reference = make_model()
    fit(reference, train, val, config(epochs=4, **began))
    with pytest.raises(KeyboardInterrupt):
        fit(make_model(), Interrupting(train, limit=30), val,
            config(epochs=4, checkpoint_dir=tmp_path, preload=False, **began))
    assert torch.load(tmp_path / "last.pt", weights_only=True)["numerics"] == {
        "compiled": False, "amp": "off", "memory_format": "contiguous"}
    resumed = make_model(seed=123)
    res = fit(resumed, train, val, config(epochs=4, checkpoint_dir=tmp_path, amp="off", compile="off"))
    assert res.resumed_from_epoch == 2 and same_weights(resumed, reference)  # went on contiguous, as it began
    assert "resuming a run trained with" not in capsys.readouterr().err
    # an explicit other setting wins, and says that the run no longer computes as it began
    with pytest.raises(KeyboardInterrupt):
        fit(make_model(), Interrupting(train, limit=30), val,
            config(epochs=4, checkpoint_dir=tmp_path / "b", preload=False, **began))
    fit(make_model(), train, val, config(epochs=4, checkpoint_dir=tmp_path / "b", amp="off", compile="off",
                                         memory_format="channels_last"))
    assert "'memory_format': 'channels_last'} as configured" in capsys.readouterr().err


def test_resume_refuses_other_settings(tmp_path):
    train = make_data(8, 0)
    fit(make_model(), train, config=config(epochs=1, checkpoint_dir=tmp_path))
    with pytest.raises(ValueError, match="batch_size=4 but this run has batch_size=2"):
        fit(make_model(), train, config=config(epochs=2, batch_size=2, checkpoint_dir=tmp_path))
    # resume=False starts over in the same directory
    result = fit(make_model(), train, config=config(epochs=1, batch_size=2, checkpoint_dir=tmp_path, resume=False))
    assert result.resumed_from_epoch == 0 and math.isfinite(result.history[0]["train_loss"])


class CountingDataset(Dataset):
    """Counts item reads, to tell a preloaded run from one that reads every epoch."""

    def __init__(self, base):
        self.base, self.reads = base, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        return self.base[i]


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_preloading_reads_once_and_trains_the_same_model(amp):
    train, val = make_data(16, 0), make_data(8, 1)
    runs = {}
    for preload in (True, False):
        torch.manual_seed(0)
        model = make_model()
        counted = CountingDataset(train)
        res = fit(model, counted, CountingDataset(val), config(epochs=3, amp=amp, preload=preload))
        runs[preload] = (model, counted.reads, res)
    assert runs[True][1] == 16  # every item once (item 0, read to size the tensors, is kept)
    assert runs[False][1] == 3 * 16  # every item in every epoch
    assert same_weights(runs[True][0], runs[False][0])  # same items, same order: the same model
    assert [h["val_loss"] for h in runs[True][2].history] == [h["val_loss"] for h in runs[False][2].history]
    assert runs[True][2].amp == amp
    with pytest.raises(ValueError, match="preload='yes'; expected 'auto', True or False"):
        TrainConfig(preload="yes")
    ragged = [(torch.zeros(5, 16, 16), torch.zeros(1, 16, 16))] * 3 + [(torch.zeros(5, 12, 16), torch.zeros(1, 16, 16))]
    with pytest.raises(ValueError, match=r"train_dataset item 3 has shapes \(5, 12, 16\) and \(1, 16, 16\), item 0 "
                                         r"\(5, 16, 16\) and \(1, 16, 16\); every item must have the same shapes"):
        fit(make_model(), ragged, config=config(epochs=1, amp=amp, preload=True))


def test_cpu_bf16_training_is_deterministic():
    train = make_data(16, 0)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = make_model()
        fit(model, train, config=config(epochs=2, amp="bf16"))
        weights.append(model)
    assert same_weights(*weights)


def test_channels_last_batches_train_the_same_model_to_float32_rounding():
    from fwi_teach.training.loop import batch_memory_format

    assert batch_memory_format("auto", torch.device("cpu")) is torch.channels_last
    assert batch_memory_format("auto", torch.device("cuda")) is torch.contiguous_format
    assert batch_memory_format("auto", torch.device("cpu"), compiled=True) is torch.contiguous_format
    assert batch_memory_format("channels_last", torch.device("cpu"), compiled=True) is torch.channels_last
    assert batch_memory_format("contiguous", torch.device("cpu")) is torch.contiguous_format
    train, val = make_data(16, 0), make_data(8, 1)
    runs = {}
    for fmt in ("channels_last", "contiguous", "channels_last"):
        model = make_model()
        model.drop = nn.Identity()  # dropout draws its mask in memory order: another layout, another mask
        res = fit(model, train, val, config(epochs=3, memory_format=fmt))
        runs.setdefault(fmt, []).append((model, res))
    (a, res_a), (b, _) = runs["channels_last"]
    c, res_c = runs["contiguous"][0]
    assert same_weights(a, b)  # deterministic in its layout
    assert all(v.is_contiguous() for v in a.state_dict().values())  # the weights keep their layout
    # The layout changes rounding only. Not every weight agrees: conv1's bias, which the batch
    # norm after it cancels, has a true gradient of zero, and AdamW turns its rounding noise
    # into full-size steps (the eval-mode running mean follows them with a lag). With batch
    # statistics, which cancel that bias, the two networks agree.
    x = val.tensors[0]
    with torch.no_grad():
        torch.testing.assert_close(a.train()(x), c.train()(x), rtol=1e-4, atol=1e-5)
    assert [h["train_loss"] for h in res_a.history] == pytest.approx([h["train_loss"] for h in res_c.history],
                                                                     rel=1e-5)
    assert res_a.best_epoch == res_c.best_epoch
    with pytest.raises(ValueError, match="memory_format='nhwc'; expected one of"):
        TrainConfig(memory_format="nhwc")


def _compiler_or_skip(monkeypatch):
    from fwi_teach.runtime import cpu_compiler

    if cpu_compiler() is None:
        pytest.skip("no C++ compiler: torch.compile cannot run here")
    monkeypatch.setenv("FWI_TEACH_COMPILE", "1")  # tests/conftest.py sets "0"


def test_compiled_step_trains_the_eager_model_to_float32_rounding_and_is_deterministic(monkeypatch):
    _compiler_or_skip(monkeypatch)
    train, val = make_data(18, 0), make_data(8, 1)  # 4 full batches of 4, then one of 2 (run eagerly)
    runs = {}
    for mode in ("on", "off", "on"):
        model = make_model()
        model.drop = nn.Identity()  # compiled dropout draws its mask differently
        res = fit(model, train, val, config(epochs=3, amp="off", compile=mode))
        runs.setdefault(mode, []).append((model, res))
    (a, res_a), (b, res_b) = runs["on"]
    c, res_c = runs["off"][0]
    assert res_a.compiled and not res_c.compiled and res_a.amp == res_c.amp == "off"
    assert same_weights(a, b)  # deterministic when compiled
    x = val.tensors[0]
    with torch.no_grad():  # batch statistics: see the channels-last test for why not eval mode
        torch.testing.assert_close(a.train()(x), c.train()(x), rtol=1e-4, atol=1e-5)
    assert [h["train_loss"] for h in res_a.history] == pytest.approx([h["train_loss"] for h in res_c.history],
                                                                     rel=1e-5)
    with pytest.raises(ValueError, match="compile='yes'; expected one of"):
        TrainConfig(compile="yes")
    assert TrainConfig(compile=True).compile == "on" and TrainConfig(compile=False).compile == "off"


def test_compile_auto_follows_the_run_length_the_machine_and_the_switch(monkeypatch):
    from fwi_teach import runtime
    from fwi_teach.training import compiled, loop

    _compiler_or_skip(monkeypatch)
    cpu = torch.device("cpu")
    n = compiled.COMPILE_MIN_STEPS
    assert compiled.use_compile("auto", cpu, n, distributed=False)
    assert not compiled.use_compile("auto", cpu, n - 1, distributed=False)  # too short to pay for compiling
    assert compiled.use_compile("on", cpu, 1, distributed=False)
    assert not compiled.use_compile("off", cpu, 10 * n, distributed=False)
    assert not compiled.use_compile("on", cpu, 10 * n, distributed=True)
    monkeypatch.setattr(runtime, "cpu_compiler", lambda: None)
    assert not compiled.use_compile("on", cpu, 10 * n, distributed=False)
    assert "no C++ compiler" in runtime.compile_unavailable(cpu)
    monkeypatch.undo()
    monkeypatch.setenv("FWI_TEACH_COMPILE", "0")
    assert runtime.compile_unavailable(cpu) == "FWI_TEACH_COMPILE=0 is set"
    # amp="auto" on a CPU: bf16 only in a compiled step on a CPU with bf16 in hardware
    for native in (True, False):
        monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda native=native: native)
        assert loop._amp_dtype("auto", cpu, compiled=True) is (torch.bfloat16 if native else None)
        assert loop._amp_dtype("auto", cpu, compiled=False) is None
        assert loop._amp_dtype("bf16", cpu) is torch.bfloat16 and loop._amp_dtype("off", cpu, True) is None


def test_a_failed_compilation_warns_once_and_trains_the_eager_model(monkeypatch):
    from fwi_teach.training import compiled

    _compiler_or_skip(monkeypatch)
    calls = []

    class Broken:
        def __init__(self, module, **kw):
            pass

        def __call__(self, x):
            calls.append(x.shape[0])
            raise RuntimeError("inductor: no working C++ compiler\nlong details")

    monkeypatch.setattr(compiled.torch, "compile", Broken)
    train = make_data(16, 0)
    model = make_model()
    with pytest.warns(UserWarning, match=r"compiled training step is not available here \(RuntimeError: inductor: "
                                         r"no working C\+\+ compiler\); training eagerly") as caught:
        res = fit(model, train, config=config(epochs=2, amp="off", compile="on"))
    assert sum("compiled training step" in str(w.message) for w in caught) == 1
    assert calls == [4] and not res.compiled  # tried once, at the first compiled step, then never again
    eager = make_model()
    # a run set to compile lays its batches out contiguous, also after falling back to eager
    fit(eager, train, config=config(epochs=2, amp="off", compile="off", memory_format="contiguous"))
    assert same_weights(model, eager)  # the failed batch was computed eagerly: nothing lost


def test_fit_steps_with_fused_adamw_where_torch_has_it(monkeypatch):
    from fwi_teach.training import loop

    params = [nn.Parameter(torch.zeros(3))]
    assert loop._adamw(params, 1e-3, 1e-4).defaults["fused"] is True  # CPU float32: the fused kernel
    real = torch.optim.AdamW

    def no_fused(p, fused=None, **kw):
        if fused:
            raise RuntimeError("fused=True requires all the params to be floating point Tensors of supported devices")
        return real(p, **kw)

    monkeypatch.setattr(loop.torch.optim, "AdamW", no_fused)
    opt = loop._adamw(params, 1e-3, 1e-4)
    assert not opt.defaults.get("fused") and opt.defaults["lr"] == 1e-3 and opt.defaults["weight_decay"] == 1e-4


def test_learning_rate_schedules():
    from fwi_teach.training import learning_rate

    flat = config(epochs=3, lr=1e-3)
    assert [learning_rate(flat, s, 4) for s in (0, 5, 11)] == [1e-3] * 3
    cos = config(epochs=3, lr=1e-3, schedule="cosine", warmup_epochs=0.5)
    lrs = [learning_rate(cos, s, 4) for s in range(12)]
    assert lrs[:2] == pytest.approx([5e-4, 1e-3])  # linear warm-up over 2 steps
    assert lrs[2] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))  # then only down
    assert lrs[2 + 9 // 2] == pytest.approx(5e-4, rel=0.2)  # half way: about half
    with pytest.raises(ValueError, match="schedule="):
        config(schedule="step")
    with pytest.raises(ValueError, match="warmup_epochs"):
        config(epochs=2, warmup_epochs=2)


def test_fit_follows_the_schedule_and_a_cosine_run_resumes_only_at_its_length(tmp_path):
    seen = []
    cfg = config(epochs=2, schedule="cosine", warmup_epochs=0.5, checkpoint_dir=tmp_path)
    model = make_model()
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", spy)
        fit(model, make_data(16, 0), make_data(8, 1), cfg)
    from fwi_teach.training import learning_rate

    assert seen == pytest.approx([learning_rate(cfg, s, 4) for s in range(8)])
    with pytest.raises(ValueError, match="cosine schedule is fixed by its length"):
        fit(make_model(), make_data(16, 0), make_data(8, 1), config(epochs=3, schedule="cosine", warmup_epochs=0.5,
                                                                   checkpoint_dir=tmp_path))


def test_per_sample_metrics_average_to_the_reported_ones():
    model = make_model()
    data = make_data(10, 3)
    out = evaluate(model, data, batch_size=3, per_sample=True)
    per = out["per_sample"]
    assert len(per["mae"]) == len(per["ssim"]) == 10
    assert sum(per["mae"]) / 10 == pytest.approx(out["mae"], rel=1e-6)
    assert sum(per["ssim"]) / 10 == pytest.approx(out["ssim"], rel=1e-6)
    assert math.sqrt(sum(r * r for r in per["rmse"]) / 10) == pytest.approx(out["rmse"], rel=1e-6)
    plain = evaluate(model, data, batch_size=3)
    assert "per_sample" not in plain
    assert plain["ssim"] == out["ssim"] and plain["mae"] == out["mae"]  # the same numbers, not just close
