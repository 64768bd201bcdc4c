"""benchmarks/peers_sst2.py --quick runs every entry, so the published comparison cannot rot."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SST2, write_tiny_minilm_vocab
from tests.figures import in_order, measured

REPO = Path(__file__).resolve().parents[2]
MUST_RUN = [  # ours, the baseline and the plain transformers teacher
    "teacher fp32", "teacher fp32, onnxruntime", "PyTorch int8 (guarded)", "onnxruntime int8",
    "vocabulary", "heads + FFN 50 % + recovery", "distill 3 layers", "preset fast",
    "preset balanced", "preset smallest", "static embeddings",
    "DistilBERT-style 3 layers (baseline)", "transformers fp32",
]  # fmt: skip
# Optional peers (the "peers" extra): skipped, with the install command, when absent.
TEXTPRUNER = ["TextPruner vocabulary", "TextPruner heads + FFN 50 %"]
PEERS = [
    "PyTorch dynamic int8", "ONNX Runtime fp32", "ONNX Runtime int8, defaults",
    "ONNX Runtime int8, per-channel", "ONNX Runtime int8, BERT optimizer + per-channel",
    "Model2Vec (library recipe)", *TEXTPRUNER,
]  # fmt: skip
SKIPPED = "TextPruner is not installed; install the peers extra: pip install -e '.[peers]'"


def _image(path: Path) -> tuple[int, int, float, bool]:
    """(width, height, share of pixels that are not white, has near-black pixels)."""
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    assert not image.isNull(), f"{path} is not a readable image"
    w, h = image.width(), image.height()
    inked = dark = 0
    total = 0
    for y in range(0, h, 4):
        for x in range(0, w, 4):
            c = image.pixelColor(x, y)
            total += 1
            inked += c.lightness() < 245
            dark += c.lightness() < 60
    return w, h, inked / total, dark > 0


@pytest.mark.skipif(not SST2.is_dir(), reason="needs ../shared/data/sst2")
def test_quick_run_measures_every_entry_and_leaves_docs_alone(tmp_path):
    # Six layers, so the 3-layer students (1,3,5 and the baseline's 0,2,4) and the 2-layer
    # preset (1,4) can all be built from it.
    teacher = write_tiny_minilm_vocab(tmp_path / "teacher", layers=6)
    work = tmp_path / "work"
    docs = [REPO / "docs" / "benchmarks.md", REPO / "docs" / "peers_sst2.png"]
    before = [p.read_bytes() if p.exists() else None for p in docs]
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "peers_sst2.py"),
        "--teacher", str(teacher), "--quick", "--work", str(work),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = json.loads((work / "peers_sst2.json").read_text(encoding="utf-8"))
    entries = {e["name"]: e for e in result["entries"]}
    assert sorted(entries) == sorted(MUST_RUN + PEERS)
    # TextPruner runs where the peers extra is installed and is skipped, saying how to
    # install it, where it is not; never an error for being absent.
    has_textpruner = importlib.util.find_spec("textpruner") is not None
    for name in TEXTPRUNER:
        e = entries[name]
        if has_textpruner:
            assert e["skipped"] is None, e
        else:
            assert e["skipped"] == SKIPPED and e["row"] == {} and e["ratios"] is None, e
            assert f"| {name} | peer |" in proc.stdout and f"skipped: {SKIPPED}" in proc.stdout
            assert f"- **{name} was skipped:** {SKIPPED}." in proc.stdout
    if has_textpruner:  # vocabulary pruning works with every transformers we support
        assert "error" not in entries["TextPruner vocabulary"]["row"]
    for name, e in entries.items():
        row = e["row"]
        if e["skipped"]:
            assert name in TEXTPRUNER, f"{name} was skipped: {e['skipped']}"
            continue
        if "error" in row:
            # Only a peer may fail, and then with a reason a person can act on.
            assert name in PEERS, f"{name}: {row['error']}"
            assert len(row["error"]) > 20 and ":" in row["error"]
            continue
        for key in ("dev", "test"):
            assert 0.0 <= row[key] <= 1.0, (name, key, row[key])
        assert row["size"] > 0
        assert measured(row["p50"], row["tput"], row["compress_s"])
        assert in_order(row["p50"], row["p95"])
        assert all(math.isfinite(v) and v > 0 for v in e["ratios"].values()), (name, e["ratios"])
    # The teacher is its own yardstick; the plain transformers export of it must agree.
    assert entries["teacher fp32"]["ratios"]["size"] == 1.0
    n_test = result["noise"]["test_n"]
    same = entries["transformers fp32"]["row"]["test"] - entries["teacher fp32"]["row"]["test"]
    assert abs(same) <= 1 / n_test + 1e-9
    # An installed TextPruner that fails names its version and ours with the exception.
    for name in TEXTPRUNER:
        error = entries[name]["row"].get("error", "")
        assert not error or error.startswith("TextPruner "), error
    # The Model2Vec peer is measured (its distillation needs no download), and says
    # which classifier it trained: the library's own, or the stand-in without its extra.
    m2v = entries["Model2Vec (library recipe)"]
    assert "error" not in m2v["row"], m2v["row"]
    assert "model2vec.distill.distill(teacher, pca_dims=256)" in m2v["what"]
    assert ("StaticModelForClassification" in m2v["what"]) == (
        importlib.util.find_spec("datasets") is not None
    )
    assert result["best_preset"] in ("preset fast", "preset balanced", "preset smallest")
    assert result["noise"]["latency"] >= 0 and 0 < result["noise"]["test_se"] < 0.05

    out = proc.stdout
    assert "| preset balanced | ours |" in out and "| PyTorch dynamic int8 | peer |" in out
    assert f"Our best preset is `{result['best_preset']}`" in out
    assert "Our fastest CPU backend against ONNX Runtime on the same model" in out
    assert "**Noise.**" in out
    # Every measured peer gets a verdict: covered by an entry of ours, or what it wins on.
    assert "- **No peer dominates us**" in out or "not covered by any entry of ours" in out
    for name in PEERS:
        if entries[name]["row"] and "error" not in entries[name]["row"]:
            assert f"  - {name} (" in out or f"  - **{name} still wins**" in out, name

    picture = Path(result["picture"])
    assert picture.parent == work
    w, h, inked, dark = _image(picture)
    assert (w, h) == (1600, 760)
    assert 0.01 < inked < 0.6 and dark  # points, text and axes on a light background

    # --quick never rewrites the published report or picture.
    assert [p.read_bytes() if p.exists() else None for p in docs] == before


@pytest.fixture
def peers_sst2(monkeypatch):
    """benchmarks/peers_sst2.py as a module."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import peers_sst2

    return peers_sst2


def _textpruner_entry(peers_sst2, name: str):
    return next(e for e in peers_sst2.lineup(_Args(), 6) if e.name == name)


class _Args:
    epochs, lr = 1.0, 1e-4


class _NoPeers:
    """run_entry's ``peers``: the TextPruner builders fail on import, before using it."""

    last_timer = None


@pytest.mark.parametrize("name", TEXTPRUNER)
def test_an_absent_textpruner_is_skipped_with_the_install_command(
    peers_sst2, monkeypatch, capsys, name
):
    monkeypatch.setitem(sys.modules, "textpruner", None)  # `import textpruner` fails
    entry = _textpruner_entry(peers_sst2, name)
    peers_sst2.run_entry(entry, None, None, None, None, _NoPeers())
    assert entry.skipped == SKIPPED and entry.row == {} and not entry.measured
    assert f"{name}: skipped: {SKIPPED}" in capsys.readouterr().err
    assert f"| {name} | peer |" in peers_sst2.table([entry]) and SKIPPED in peers_sst2.table(
        [entry]
    )


def test_an_installed_textpruner_that_does_not_import_is_an_error_not_a_skip(
    peers_sst2, monkeypatch, tmp_path
):
    # Installed, but one of its own imports is missing: a finding, not "not installed".
    package = tmp_path / "site" / "textpruner"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import sentencepiece_that_is_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "textpruner", raising=False)
    entry = _textpruner_entry(peers_sst2, "TextPruner vocabulary")
    peers_sst2.run_entry(entry, None, None, None, None, _NoPeers())
    assert not entry.skipped and not entry.measured
    assert entry.row["error"].startswith("TextPruner is installed but does not import: ")
    assert "sentencepiece_that_is_missing" in entry.row["error"]


def _row(test, p50, size):
    return {"test": test, "p50": p50, "size": size, "dev": test, "p95": p50, "tput": 1.0}


def test_dominance_names_the_entry_that_covers_each_peer_or_what_the_peer_wins_on(peers_sst2):
    noise = peers_sst2.Noise(
        p50_start=10.0, p50_end=11.0, p95_start=12.0, tput_start=1.0, tput_end=1.0,
        test_se=0.007, test_n=1821,
    )  # fmt: skip
    E = peers_sst2.Entry
    entries = [
        E("teacher fp32", "", "teacher", row=_row(0.90, 10.0, 90e6)),
        E("small", "", "ours", row=_row(0.895, 0.6, 8e6)),
        E("static", "", "ours", row=_row(0.78, 0.04, 8e6)),
        # 0.5 points better: within one standard error (0.7), so covered by "small";
        # 1.09x faster than "small" is within the 10 % latency noise.
        E("ORT int8", "", "peer", row=_row(0.90, 0.55, 23e6)),
        # Faster than anything of ours beyond the noise, and more accurate than "static".
        E("Model2Vec", "", "peer", row=_row(0.81, 0.02, 15e6)),
        E("broken", "", "peer", row={"error": "did not import: x"}),
    ]
    lines = peers_sst2.dominance(entries, noise)
    assert lines[0].startswith("- **1 peer(s) not covered by any entry of ours**")
    assert lines[1] == (
        "  - ORT int8 (90.00 %, 0.55 ms, 23.0 MB): covered by our `small` (89.50 %, 0.60 ms, "
        "8.0 MB)."
    )
    assert lines[2].startswith("  - **Model2Vec still wins** (81.00 %, 0.02 ms, 15.0 MB)")
    # The closest entry is the one short on the fewest axes: "small", only on speed.
    assert lines[2].endswith(
        "our closest entry, `small`, falls short on p50 (0.60 against 0.02 ms)."
    )
    assert len(lines) == 3  # a peer that did not run gets no verdict
    entries[4].row = _row(0.785, 0.04, 15e6)
    assert peers_sst2.dominance(entries, noise)[0].startswith("- **No peer dominates us**")


def test_a_finished_result_is_an_entry_with_its_recorded_training_time(peers_sst2, tmp_path):
    def record(folder, step, parent, seconds, job=3):
        folder.mkdir()
        body = {
            "job_id": job, "step": step, "parent": str(parent) if parent else None,
            "metrics": {"training": {"train_seconds": seconds}} if seconds else {},
        }  # fmt: skip
        (folder / "slimpajama.json").write_text(json.dumps(body))

    distill = {"type": "distill", "student_layers": [0, 1, 2, 5], "ffn_fraction": 0.5}
    record(tmp_path / "teacher", {"type": "finetune"}, None, 2000.0, job=1)  # not counted
    record(tmp_path / "01-distill", distill, tmp_path / "teacher", 1419.2, job=2)
    # The vocabulary and int8 came in a second job, from the first job's student.
    record(
        tmp_path / "01-prune", {"type": "prune", "method": "vocabulary"}, tmp_path / "01-distill", 0
    )
    record(
        tmp_path / "02-quantize",
        {"type": "quantize", "backend": "onnxruntime"},
        tmp_path / "01-prune",
        0,
    )
    final = tmp_path / "02-quantize"
    assert peers_sst2.recorded_training_seconds(final, tmp_path / "teacher") == pytest.approx(
        1419.2
    )
    (entry,) = peers_sst2.result_entries([f"headline={final}"], tmp_path / "teacher")
    assert entry.kind == "ours" and entry.model == final.resolve()
    assert (
        "(Distill into teacher layers 0, 1, 2, 5, 50 % of its FFN removed; Prune vocabulary; "
        in entry.what
    )
    assert "Fine-tune" not in entry.what  # the teacher's own training is not the entry's
    with pytest.raises(SystemExit, match="expected NAME=FOLDER"):
        peers_sst2.result_entries([str(tmp_path / "missing")])
