"""safe_io: hostile or damaged safetensors files (docs/reliability.md M1-M3) and atomic writes."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage import atomic
from slimpajama_gui.core.storage.atomic import atomic_dir, atomic_write_bytes, atomic_write_text
from slimpajama_gui.core.storage.safe_io import (
    MAX_HEADER_BYTES,
    load_safetensors,
    read_safetensors_header,
)


def write_raw(path: Path, header: dict, data: bytes = b"", declared: int | None = None) -> Path:
    """A safetensors file written by hand, so the header can lie."""
    raw = json.dumps(header).encode()
    length = len(raw) if declared is None else declared
    path.write_bytes(struct.pack("<Q", length) + raw + data)
    return path


@pytest.fixture
def real_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    save_file(
        {
            "encoder.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
            "encoder.bias": np.ones(4, dtype=np.float16),
            "position_ids": np.arange(5, dtype=np.int64)[None, :],
        },
        str(path),
    )
    return path


def test_valid_file_passes_and_shapes_match(real_file: Path) -> None:
    header = read_safetensors_header(real_file)
    assert header.file_size == real_file.stat().st_size
    assert {k: (t.dtype, t.shape) for k, t in header.tensors.items()} == {
        "encoder.weight": ("F32", (3, 4)),
        "encoder.bias": ("F16", (4,)),
        "position_ids": ("I64", (1, 5)),
    }
    assert header.tensors["encoder.weight"].numel == 12
    tensors = load_safetensors(real_file)
    assert tuple(tensors["encoder.weight"].shape) == (3, 4)
    assert float(tensors["encoder.weight"][2, 3]) == 11.0


def test_m1_header_length_beyond_file(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "evil.safetensors", {}, declared=10_000)
    with pytest.raises(UserError, match=r"not a valid safetensors file: evil\.safetensors"):
        read_safetensors_header(path)


def test_m1_header_over_100_mb_refused_without_reading(tmp_path: Path) -> None:
    # A sparse file big enough to hold the declared header, so only the size cap refuses.
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", MAX_HEADER_BYTES + 1))
        fh.truncate(MAX_HEADER_BYTES + 64)
    with pytest.raises(UserError, match=r"not a valid safetensors file: huge\.safetensors"):
        read_safetensors_header(path)


def test_m1_tiny_and_non_json_files(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"\x01\x02")
    with pytest.raises(UserError, match=r"not a valid safetensors file: tiny\.safetensors"):
        read_safetensors_header(tiny)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{[")
    with pytest.raises(UserError, match="not a valid safetensors file"):
        read_safetensors_header(garbage)


def test_m2_truncated_copy_is_incomplete(real_file: Path, tmp_path: Path) -> None:
    data = real_file.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-10])
    with pytest.raises(UserError, match="file is incomplete"):
        read_safetensors_header(cut)


def test_m2_truncated_inside_header(real_file: Path, tmp_path: Path) -> None:
    data = real_file.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:20])
    with pytest.raises(UserError, match=r"not a valid safetensors file: cut\.safetensors"):
        read_safetensors_header(cut)


def test_m3_overlapping_offsets_refused(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    path = write_raw(tmp_path / "overlap.safetensors", header, b"\0" * 24)
    with pytest.raises(UserError, match="overlaps"):
        read_safetensors_header(path)


@pytest.mark.parametrize(
    "offsets",
    [
        [0, 4096],  # beyond the end of the data
        [-16, 0],  # negative
        [16, 0],  # end before begin
        [0, 8],  # does not match the shape
    ],
)
def test_m3_out_of_range_offsets_refused(tmp_path: Path, offsets: list[int]) -> None:
    shape = [1024] if offsets == [0, 4096] else [4]
    header = {"a": {"dtype": "F32", "shape": shape, "data_offsets": offsets}}
    path = write_raw(tmp_path / "range.safetensors", header, b"\0" * 16)
    with pytest.raises(UserError):
        read_safetensors_header(path)


def test_m3_unknown_dtype_and_malformed_entry(tmp_path: Path) -> None:
    bad_dtype = {"a": {"dtype": "OBJECT", "shape": [1], "data_offsets": [0, 8]}}
    with pytest.raises(UserError, match="dtype"):
        read_safetensors_header(write_raw(tmp_path / "d.safetensors", bad_dtype, b"\0" * 8))
    malformed = {"a": {"dtype": "F32"}}
    with pytest.raises(UserError, match="malformed"):
        read_safetensors_header(write_raw(tmp_path / "m.safetensors", malformed))


def test_m3_refused_file_never_reaches_the_rust_loader(tmp_path: Path, monkeypatch) -> None:
    import safetensors.torch

    def boom(*args, **kwargs):
        raise AssertionError("load_file must not be called on a refused file")

    monkeypatch.setattr(safetensors.torch, "load_file", boom)
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    path = write_raw(tmp_path / "overlap.safetensors", header, b"\0" * 24)
    with pytest.raises(UserError):
        load_safetensors(path)


# --------------------------------------------------------------------------- atomic writes


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name]


def test_atomic_dir_exception_leaves_old_target_identical(tmp_path: Path) -> None:
    target = tmp_path / "variant"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"old weights")
    (target / "sub").mkdir()
    (target / "sub" / "x.json").write_text("{}")
    before = snapshot(target)

    with pytest.raises(RuntimeError, match="disk full"), atomic_dir(target) as staging:
        (staging / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")

    assert snapshot(target) == before
    assert leftovers(tmp_path) == []


def test_atomic_dir_success_replaces(tmp_path: Path) -> None:
    target = tmp_path / "variant"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic_dir(target) as staging:
        assert staging != target
        assert not (staging / "stale.txt").exists()
        (staging / "config.json").write_text('{"model_type": "bert"}')
    assert snapshot(target) == {"config.json": b'{"model_type": "bert"}'}
    assert leftovers(tmp_path) == []


def test_atomic_dir_creates_new_target(tmp_path: Path) -> None:
    target = tmp_path / "results" / "new"
    with atomic_dir(target) as staging:
        (staging / "a.txt").write_text("a")
    assert (target / "a.txt").read_text() == "a"
    assert leftovers(target.parent) == []


def test_atomic_write_text(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    atomic_write_text(path, "first: 1\n")
    assert path.read_text() == "first: 1\n"
    atomic_write_text(path, "second: 2 — ünïcode\n")
    assert path.read_text(encoding="utf-8") == "second: 2 — ünïcode\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    assert os.listdir(tmp_path) == ["report.json"]


def test_what_a_killed_atomic_write_leaves_is_undone_to_old_or_new(tmp_path, monkeypatch):
    """kill -9 inside atomic_dir / atomic_write: each target ends old or new, never half."""
    out = tmp_path / "out"
    for name in ("01-finetune", "02-prune", "03-distill"):
        (out / name).mkdir(parents=True)
        (out / name / "model.safetensors").write_bytes(f"old {name}".encode())
    # A process killed at a point where atomic_dir's own clean-up never runs.
    monkeypatch.setattr(atomic.shutil, "rmtree", lambda *a, **k: None)
    real_replace = os.replace

    class Killed(BaseException):
        pass

    def kill_at(n: int):
        calls = []

        def replace(src, dst):
            calls.append(src)
            if len(calls) >= n:  # a dead process does nothing more
                raise Killed
            real_replace(src, dst)

        return replace

    # 01: killed while writing the new copy.
    with pytest.raises(Killed), atomic_dir(out / "01-finetune") as staging:
        (staging / "model.safetensors").write_bytes(b"half")
        raise Killed
    # 02: killed between moving the old copy aside and moving the new one in (where
    # the system cannot swap two names in one step).
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    monkeypatch.setattr(atomic.os, "replace", kill_at(2))
    with pytest.raises(Killed), atomic_dir(out / "02-prune") as staging:
        (staging / "model.safetensors").write_bytes(b"new 02-prune")
    assert not (out / "02-prune").exists()
    # 03: killed after the swap, before the old copy was removed.
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    with atomic_dir(out / "03-distill") as staging:
        (staging / "model.safetensors").write_bytes(b"new 03-distill")
    # A report being rewritten inside a variant: its temporary file.
    (out / "03-distill" / ".slimpajama.json.k2j4x9aa.tmp").write_text('{"half')
    (out / "03-distill" / "notes.tmp").write_text("the user's own file")
    monkeypatch.undo()
    assert len([p for p in out.iterdir() if p.name.startswith(".")]) == 4

    touched = atomic.recover_atomic_leftovers(out)
    touched += atomic.recover_atomic_leftovers(out / "03-distill")

    assert len(touched) == 5
    assert sorted(p.name for p in out.iterdir()) == ["01-finetune", "02-prune", "03-distill"]
    assert snapshot(out / "01-finetune") == {"model.safetensors": b"old 01-finetune"}
    assert snapshot(out / "02-prune") == {"model.safetensors": b"old 02-prune"}
    assert snapshot(out / "03-distill") == {
        "model.safetensors": b"new 03-distill",
        "notes.tmp": b"the user's own file",
    }
    assert atomic.recover_atomic_leftovers(out) == []
    assert atomic.recover_atomic_leftovers(tmp_path / "missing") == []
