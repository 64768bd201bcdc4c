"""Shared helpers for the benchmark scripts: machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

from slimpajama_gui.core.storage.atomic import atomic_write_text
from slimpajama_gui.core.techniques.quantize import int8_path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Every figure here was printed by a script in `benchmarks/` on the machine it names, and
the script wrote its own section. Rerun the command under a section to reproduce it.
Speed-ups are ratios measured within one run, against the baseline on the same input.
int8 figures depend on the CPU's int8 arithmetic (8-bit activations on x86 with
AVX512-VNNI and on ARM, 7-bit on other x86): each section's machine line names its
"int8 path"; `SLIMPAJAMA_INT8_PATH=no-vnni` reproduces the 7-bit path on any x86 CPU.
"""


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"model name\s*:\s*(.+)", text)
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; int8 path: {int8_path.current().describe()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.system()} {platform.release()}"
    )


def read_section(key: str) -> str | None:
    """The text of the section marked ``key`` in docs/benchmarks.md, or None if absent."""
    if not DOC.exists():
        return None
    text = DOC.read_text(encoding="utf-8")
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    if start not in text or end not in text:
        return None
    return text[text.index(start) + len(start) : text.index(end)]


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section marked ``key`` in docs/benchmarks.md, atomically."""
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else HEADER
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(DOC, text if text.endswith("\n") else text + "\n")
