"""int8 that means the same on every CPU: the path each CPU takes, and exact arithmetic.

``make test`` runs this module on every int8 path: as this CPU computes int8, with
``SLIMPAJAMA_INT8_PATH=no-vnni`` (7-bit activations on fbgemm's AVX2 kernels) and with
``SLIMPAJAMA_INT8_PATH=arm`` (qnnpack), so every path is checked on any x86 machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.techniques.quantize import int8_path
from slimpajama_gui.core.techniques.quantize.int8_path import ENV_VAR, Int8Path
from slimpajama_gui.core.techniques.quantize.methods import use_int8_kernels
from slimpajama_gui.core.techniques.quantize.modules import DynamicInt8Linear

pytestmark = pytest.mark.int8


def _choose_qparams(x: np.ndarray, qmax: int) -> tuple[np.float32, int]:
    """PyTorch's ChooseQuantizationParams for activations in 0..qmax, written out."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / qmax
    if np.float32(scale) == 0:
        scale = 0.1
    if scale < 6.1e-5:
        grow = 6.1e-5 / scale
        scale, lo, hi = 6.1e-5, lo * grow, hi * grow
    from_lo, from_hi = -lo / scale, qmax - hi / scale
    zero = from_lo if -abs(lo / scale) < qmax - abs(hi / scale) else from_hi
    return np.float32(scale), int(np.clip(np.rint(zero), 0, qmax))


def _exact_linear(x: np.ndarray, module: DynamicInt8Linear, qmax: int) -> np.ndarray:
    """What an int8 Linear must return: integer products, summed without overflow."""
    scale, zero = _choose_qparams(x, qmax)
    xq = np.clip(np.rint(x.astype(np.float32) / scale) + zero, 0, qmax).astype(np.int64)
    w = module.weight()
    wq = w.int_repr().numpy().astype(np.int64)  # (out, in)
    w_scale = w.q_per_channel_scales().numpy().astype(np.float64)
    acc = (xq - zero) @ wq.T  # (B, out) int64: nothing can saturate
    return acc * float(scale) * w_scale + module.bias().detach().numpy()


def _int8_linear(weight: torch.Tensor) -> DynamicInt8Linear:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    assert use_int8_kernels() == int8_path.current().engine
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(weight)
    model = quantize_dynamic(
        nn.Sequential(linear),
        {nn.Linear: per_channel_dynamic_qconfig},
        mapping={nn.Linear: DynamicInt8Linear},
    )
    assert isinstance(model[0], DynamicInt8Linear)
    return model[0]


def test_C1_int8_linear_computes_the_exact_integer_product_on_every_cpu():
    """The int8 Linear returns the exact integer result for its path's activation bits.

    The second case is built to overflow an int16 pair sum with 8-bit activations
    (weights at +-127, large activations where the weight is positive): an AVX2 kernel
    fed 8 bits returns a number ~120 away from the exact one (measured), so a CPU that
    took the wrong path fails here.
    """
    path = int8_path.current()
    g = torch.Generator().manual_seed(0)
    signs = torch.randn(64, 384, generator=g).sign()
    cases = {
        "normal": (torch.randn(64, 384, generator=g) * 0.05, torch.randn(4, 384, generator=g)),
        "saturating": (signs, torch.rand(4, 384, generator=g) * 10 * (signs[0] > 0)),
    }
    for name, (weight, x) in cases.items():
        module = _int8_linear(weight)
        assert module.reduce_range == (path.activation_bits == 7)
        with torch.no_grad():
            got = module(x).numpy().astype(np.float64)
        want = _exact_linear(x.numpy(), module, path.qmax)
        error = np.abs(got - want).max() / np.abs(want).max()
        assert error < 1e-5, f"{name}: relative error {error:.2e} on {path.describe()}"


def test_C1_the_int8_path_follows_the_cpu_and_the_override(monkeypatch):
    import torch

    def path_for(*, vnni: bool, native: str = "x86", env: str | None = None) -> Int8Path:
        monkeypatch.setattr(int8_path, "_has_avx512_vnni", lambda: vnni)
        monkeypatch.setattr(int8_path, "_native_engine", lambda: native)
        if env is None:
            monkeypatch.delenv(ENV_VAR, raising=False)
        else:
            monkeypatch.setenv(ENV_VAR, env)
        int8_path.current.cache_clear()
        return int8_path.current()

    try:
        assert path_for(vnni=True) == Int8Path("vnni", 8, "x86")
        assert path_for(vnni=False) == Int8Path("no-vnni", 7, "x86")
        assert path_for(vnni=False, native="fbgemm") == Int8Path("no-vnni", 7, "fbgemm")
        assert path_for(vnni=True, env="no-vnni") == Int8Path("no-vnni", 7, "x86", forced=True)
        assert path_for(vnni=False, env="No-VNNI ") == Int8Path("no-vnni", 7, "x86")
        assert path_for(vnni=True, env="auto") == Int8Path("vnni", 8, "x86")
        assert path_for(vnni=False, native="qnnpack") == Int8Path("arm", 8, "qnnpack")
        assert path_for(vnni=False, native="qnnpack", env="arm") == Int8Path("arm", 8, "qnnpack")
        if "qnnpack" in torch.backends.quantized.supported_engines:
            forced = path_for(vnni=True, env="arm")
            assert forced == Int8Path("arm", 8, "qnnpack", forced=True)
            assert forced.describe() == (
                "ARM/qnnpack (8-bit activations, forced by SLIMPAJAMA_INT8_PATH)"
            )
        assert path_for(vnni=True, env="no-vnni").describe() == (
            "x86 without AVX512-VNNI (7-bit activations, forced by SLIMPAJAMA_INT8_PATH)"
        )
        with pytest.raises(UserError, match=f"{ENV_VAR} is 'avx2'; set it to 'no-vnni'"):
            path_for(vnni=True, env="avx2")
        with pytest.raises(UserError, match="qnnpack here, which always uses 8-bit"):
            path_for(vnni=False, native="qnnpack", env="no-vnni")
    finally:
        int8_path.current.cache_clear()


def test_the_override_selects_fbgemms_avx2_kernels(monkeypatch):
    monkeypatch.delenv("FBGEMM_ENABLE_INSTRUCTIONS", raising=False)
    monkeypatch.setenv(ENV_VAR, "no-vnni")
    int8_path.apply_override()
    import os

    assert os.environ["FBGEMM_ENABLE_INSTRUCTIONS"] == "AVX2"
    # A choice the user made for fbgemm is theirs.
    monkeypatch.setenv("FBGEMM_ENABLE_INSTRUCTIONS", "AVX512")
    int8_path.apply_override()
    assert os.environ["FBGEMM_ENABLE_INSTRUCTIONS"] == "AVX512"
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.delenv("FBGEMM_ENABLE_INSTRUCTIONS")
    int8_path.apply_override()
    assert "FBGEMM_ENABLE_INSTRUCTIONS" not in os.environ


def test_a_mistyped_override_is_refused_before_any_step(monkeypatch, tiny_minilm, tmp_path, capsys):
    from slimpajama_gui import cli
    from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, run
    from slimpajama_gui.core.plan.recipe import recipe_from_yaml

    class Steps(PipelineCallbacks):
        started: list[str] = []

        def on_step_start(self, index, step, count):
            self.started.append(step.step_type)

    monkeypatch.setenv(ENV_VAR, "avx2")
    recipe = recipe_from_yaml(
        f"name: t\nmodel: {tiny_minilm}\ndataset:\n  train: demo\noutput: {tmp_path / 'out'}\n"
        "steps:\n  - {type: finetune, epochs: 1}\n  - {type: quantize, method: dynamic_int8}\n",
        source="t.yaml",
        base_dir=tmp_path,
    )
    callbacks = Steps()
    result = run(recipe, callbacks)
    assert result.status == "failed" and f"{ENV_VAR} is 'avx2'" in result.error
    assert callbacks.started == [] and not (tmp_path / "out").exists()
    assert cli.main(["info", "packaged"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: the environment variable {ENV_VAR} is 'avx2'")
    assert "'auto'" in err and "Traceback" not in err
