"""Which int8 arithmetic this CPU runs, and the override that selects the other one.

PyTorch's dynamic int8 Linear quantizes each input (activation) on the fly and
multiplies it with int8 weights. What that multiply computes depends on the CPU:

- **x86 with AVX512-VNNI** (``vpdpbusd``): products accumulate straight into int32, so
  8-bit activations are exact. fbgemm has kernels for this and nothing else VNNI-like
  (AVX-VNNI on 256-bit-only laptops runs fbgemm's AVX2 kernels).
- **other x86** (AVX2, or AVX-512 without VNNI): fbgemm adds pairs of uint8 x int8
  products in a *saturating int16* (``vpmaddubsw``). 8-bit activations can overflow it
  (2 x 255 x 128 > 32767) and silently return other numbers, so activations must be
  quantized to 7 bits (``reduce_range``; 2 x 127 x 128 fits), which doubles their
  rounding error.
- **ARM** (qnnpack): exact with 8 bits; qnnpack ignores ``reduce_range``.

So one saved int8 model (the same int8 weights and scales) computes with 8-bit
activations on VNNI and ARM and with 7-bit activations elsewhere: its accuracy can
differ by path. Reports and exports record which path a figure came from.

Nobody can pick their CPU, so ``SLIMPAJAMA_INT8_PATH=no-vnni`` makes a VNNI machine
compute as one without VNNI does: 7-bit activations, and fbgemm forced onto its AVX2
kernels (``FBGEMM_ENABLE_INSTRUCTIONS=AVX2``, read by fbgemm once, at its first use, so
:func:`apply_override` runs when ``slimpajama_gui.core`` is imported), and
``SLIMPAJAMA_INT8_PATH=arm`` runs ARM's int8 kernels (qnnpack, which x86 builds of
PyTorch include) on an x86 machine. ``make test`` runs the int8 and ONNX tests again on
the paths this CPU does not take by itself. ONNX Runtime has no such switch; the 7-bit
graphs the exporter writes for the no-VNNI path cannot saturate on any CPU, while 8-bit
graphs saturate in ONNX Runtime on x86 without VNNI
(:mod:`slimpajama_gui.core.techniques.ort_int8_kernels`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from slimpajama_gui.core.errors import UserError

#: Environment variable selecting the int8 path: unset, "auto", "no-vnni" or "arm".
ENV_VAR = "SLIMPAJAMA_INT8_PATH"
_FBGEMM_ENV = "FBGEMM_ENABLE_INSTRUCTIONS"
_CHOICES = ("auto", "no-vnni", "arm")

PathName = Literal["vnni", "no-vnni", "arm"]


@dataclass(frozen=True)
class Int8Path:
    """How this process computes dynamic int8 matrix products.

    Attributes:
        name: "vnni" (x86 with AVX512-VNNI), "no-vnni" (other x86) or "arm" (qnnpack).
        activation_bits: 8, or 7 on "no-vnni" (activations in 0..127 instead of 0..255).
        engine: PyTorch's quantized engine for this path ("x86", "fbgemm" or "qnnpack").
        forced: True when :data:`ENV_VAR` selected a path this CPU does not take itself.
    """

    name: PathName
    activation_bits: int
    engine: str = "x86"
    forced: bool = False

    @property
    def qmax(self) -> int:
        """Largest quantized activation value: 255 for 8 bits, 127 for 7."""
        return (1 << self.activation_bits) - 1

    def describe(self) -> str:
        """One phrase for reports, e.g. "x86 without VNNI (7-bit activations), forced"."""
        where = {
            "vnni": "x86 with AVX512-VNNI",
            "no-vnni": "x86 without AVX512-VNNI",
            "arm": "ARM/qnnpack",
        }[self.name]
        forced = f", forced by {ENV_VAR}" if self.forced else ""  # e.g. ARM's on x86
        return f"{where} ({self.activation_bits}-bit activations{forced})"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "activation_bits": self.activation_bits,
            "forced": self.forced,
            "description": self.describe(),
        }


def _requested() -> str:
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value not in _CHOICES:
        raise UserError(
            f"the environment variable {ENV_VAR} is {os.environ[ENV_VAR]!r}; set it to "
            "'no-vnni' (compute int8 as an x86 CPU without VNNI does), 'arm' (as ARM "
            "CPUs do) or 'auto' (as this CPU does, the same as leaving it unset)."
        )
    return value


def check_setting() -> None:
    """Refuse a mistyped :data:`ENV_VAR` at once, before a job spends time on other steps.

    Raises:
        UserError: the variable holds something else than "auto", "no-vnni" or "arm".
    """
    _requested()


def apply_override() -> None:
    """Point fbgemm at its AVX2 kernels when :data:`ENV_VAR` asks for "no-vnni".

    Must run before the first int8 kernel call (fbgemm reads the variable once); a
    value the user set for ``FBGEMM_ENABLE_INSTRUCTIONS`` themselves is left alone. An
    invalid :data:`ENV_VAR` is reported by :func:`current`, not here.
    """
    if os.environ.get(ENV_VAR, "").strip().lower() == "no-vnni":
        os.environ.setdefault(_FBGEMM_ENV, "AVX2")


def _has_avx512_vnni() -> bool:
    import torch

    probe = getattr(torch.cpu, "_is_vnni_supported", None)  # cpuinfo: any OS
    if probe is not None:
        try:
            return bool(probe())
        except Exception:  # noqa: BLE001 - a private API; fall back to the flags
            pass
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return False  # unknown: the 7-bit path is exact on every x86 CPU
    return "avx512_vnni" in flags


def _native_engine() -> str:
    """The engine this CPU's PyTorch build runs int8 with: x86/fbgemm, else qnnpack (ARM)."""
    import torch

    supported = torch.backends.quantized.supported_engines
    return next((e for e in ("x86", "fbgemm", "qnnpack") if e in supported), "none")


@functools.cache
def current() -> Int8Path:
    """The int8 path of this process (decided once; see the module docstring).

    Raises:
        UserError: :data:`ENV_VAR` holds something else than "auto", "no-vnni" or
            "arm"; asks for "no-vnni" where PyTorch has only ARM's kernels (qnnpack,
            always 8 bits); or asks for "arm" where this PyTorch build has no qnnpack.
    """
    import torch

    requested = _requested()
    native = _native_engine()
    if requested == "arm":
        if "qnnpack" not in torch.backends.quantized.supported_engines:
            raise UserError(
                f"{ENV_VAR}=arm needs PyTorch's qnnpack kernels, which this PyTorch build "
                "does not have; unset it."
            )
        return Int8Path("arm", 8, "qnnpack", forced=native != "qnnpack")
    if native not in ("x86", "fbgemm"):
        if requested == "no-vnni":
            raise UserError(
                f"{ENV_VAR}=no-vnni emulates x86 CPUs without VNNI, but PyTorch runs int8 "
                "with qnnpack here, which always uses 8-bit activations; unset it."
            )
        return Int8Path("arm", 8, native)
    vnni = _has_avx512_vnni()
    if requested == "no-vnni":
        return Int8Path("no-vnni", 7, native, forced=vnni)
    return Int8Path("vnni", 8, native) if vnni else Int8Path("no-vnni", 7, native)
