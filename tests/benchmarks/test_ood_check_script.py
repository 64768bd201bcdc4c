"""benchmarks/ood_check.py --quick: every model's out-of-domain accuracy against the teacher."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from slimpajama_gui.core.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("ood_check", REPO / "benchmarks" / "ood_check.py")
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up in sys.modules while the class is made.
    sys.modules.setdefault("ood_check", module)
    spec.loader.exec_module(module)
    return sys.modules["ood_check"]


def test_the_shipped_check_sets_are_balanced_lower_case_and_disjoint():
    ood = _script()
    domains = ood.read_sets(ood.SETS)
    assert [d.name for d in domains] == ["films", "products", "restaurants"]
    confirm = ood.read_sets(REPO / "resources" / "ood-confirm")
    assert [d.name for d in confirm] == ["apps", "books", "hotels"]
    holdout = ood.read_sets(REPO / "resources" / "ood-holdout")
    assert [d.name for d in holdout] == ["beauty", "games", "travel"]
    seen: set[str] = set()
    for d in [*domains, *confirm, *holdout]:
        assert len(d.texts) == 1000 and int(d.labels.sum()) * 2 == len(d.labels)
        assert all(t == t.lower() and t.strip() == t for t in d.texts)
        assert not seen & set(d.texts)
        seen |= set(d.texts)


def test_quick_run_names_each_variant_its_flips_and_unk_share(tiny_minilm, tmp_path, capsys):
    from slimpajama_gui.core.jobs.pipeline import run
    from slimpajama_gui.core.plan.recipe import recipe_from_yaml
    from slimpajama_gui.core.storage.history import JobStore

    out = tmp_path / "out"
    recipe = recipe_from_yaml(
        f"name: vocab\nmodel: {tiny_minilm}\n"
        "dataset:\n  train: demo\n  labels: [negative, positive]\n  max_length: 48\n"
        f"output: {out}\nsteps:\n  - {{type: prune, method: vocabulary, keep_general: 0}}\n",
        source="test.yaml",
        base_dir=tmp_path,
    )
    with JobStore(tmp_path / "history.sqlite3") as store:
        result = run(recipe, store=store)
    assert result.status == "done", result.error
    report = REPO / "docs" / "benchmarks.md"
    before = report.read_bytes() if report.exists() else None
    ood = _script()
    demo_train = REPO / "resources" / "demo" / "train.tsv"
    code = ood.main(
        ["--teacher", str(tiny_minilm), "--results", str(out), "--quick"]
        + ["--keep-general", "0,3000", "--train", str(demo_train)]
    )
    text = capsys.readouterr().out
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if "|" in line}
    assert {"teacher", "out/01-prune"} <= set(rows)
    header = rows["model"]
    for name in ("films acc", "products acc", "restaurants acc", "flips vs teacher"):
        assert name in header
    teacher, pruned = rows["teacher"], rows["out/01-prune"]
    assert "| 0 (0.0 %) |" in teacher and "| teacher |" in teacher
    # The demo's vocabulary lacks most of these words: the pruned model reads [UNK]s.
    unk_share = float(pruned.split(" | ")[-2].rstrip(" %"))
    assert unk_share > 0 and "| 0.0 % |" in teacher
    # The sweep: the teacher pruned in memory, keep_general 0 (as the job) and 3,000.
    none, some = (
        rows["teacher, vocabulary keep_general 0"],
        rows["teacher, vocabulary keep_general 3,000"],
    )
    # ... which keeps the ids the job kept, on the same texts.
    assert none.split(" | ")[2] == pruned.split(" | ")[2]
    assert float(some.split(" | ")[-2].rstrip(" %")) <= float(none.split(" | ")[-2].rstrip(" %"))
    kept = [int(r.split(" | ")[2].replace(",", "")) for r in (none, some)]
    assert kept[0] < kept[1] and "keep_general 3,000:" in text and "for general text" in text
    verdicts = [r.rstrip(" |").endswith("yes") for r in (pruned, none, some)]
    assert code == (0 if all(verdicts) else 1)
    assert f"films {ood.QUICK_ROWS}" in text  # --quick checks the first rows only
    # --quick never rewrites the published report.
    assert (report.read_bytes() if report.exists() else None) == before


def test_a_check_set_without_its_header_is_named(tmp_path):
    (tmp_path / "odd.tsv").write_text("text\tlabel\nfine\t1\n", encoding="utf-8")
    with pytest.raises(UserError, match="odd.tsv.*sentence<TAB>label"):
        _script().read_sets(tmp_path)


def test_section_names_the_table_and_a_bad_name_is_refused(tiny_minilm, capsys):
    ood = _script()
    with pytest.raises(SystemExit):
        ood.main(["--teacher", str(tiny_minilm), "--quick", "--section", "Bad Name"])
    assert "--section 'Bad Name': use lower-case letters" in capsys.readouterr().err
    assert ood.main(["--teacher", str(tiny_minilm), "--quick", "--section", "ood-check-x"]) == 0
    assert "## Out-of-domain checks (ood-check-x)" in capsys.readouterr().out


def test_a_run_that_would_drop_rows_of_a_section_stops_first(
    tiny_minilm, tmp_path, monkeypatch, capsys
):
    ood = _script()
    report = tmp_path / "benchmarks.md"
    report.write_text(
        "# Benchmarks\n\n<!-- ood-check-x:start -->\n## Out-of-domain checks (ood-check-x)\n\n"
        "| model | backend | token ids | films acc (Δ) |\n|---|---|---|---|\n"
        "| teacher | pytorch | 30,522 | 85.8 |\n| gone/02-quantize | onnx | 30,522 | 85.1 (-0.7) |\n"
        "| teacher, vocabulary keep_general 0 | pytorch | 9,000 | 80.1 (-5.7) |\n"
        "<!-- ood-check-x:end -->\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(sys.modules["_report"], "DOC", report)
    before = report.read_bytes()
    with pytest.raises(SystemExit):
        ood.main(["--teacher", str(tiny_minilm), "--section", "ood-check-x"])
    err = capsys.readouterr().err
    # The model the run does not check is named, the sweep's and teacher's rows are not.
    assert "section 'ood-check-x' has rows for gone/02-quantize, which this run" in err
    assert "--replace" in err and "keep_general" not in err
    assert report.read_bytes() == before
    assert ood.section_models(report.read_text(encoding="utf-8")) == ["gone/02-quantize"]
