"""Do compressed variants still read text from outside their training data? Out-of-domain checks.

    .venv/bin/python benchmarks/ood_check.py --teacher TEACHER_FOLDER \
        --variant VARIANT_FOLDER ... --results RESULTS_FOLDER ...

Runs the teacher and every variant over the out-of-domain sets in ``resources/ood``
(products, films, restaurants: review sentences written for this project, 1,000 each,
balanced) and prints, per model, the accuracy per domain and pooled with its change
against the teacher, the prediction flips against the teacher, and the share of
sentences that hold an [UNK] with the model's own tokenizer. ``--results`` adds every
variant folder (``NN-step`` with a ``slimpajama.json``) of a job's output folder.
A variant is within budget when its pooled accuracy and each domain's stay within
``--budget`` points (1.5) of the teacher.

``--keep-general 0,10000,20000 --train TRAIN.tsv`` adds, per value, the teacher with
its vocabulary pruned in memory to the ids TRAIN's texts use plus the tokenizer's
``keep_general`` most common ones (what the prune step's ``keep_general`` does; its
default was chosen from this sweep), with the ids kept and the parameters.

Writes the "ood-check" section of docs/benchmarks.md, with ``--note`` (how the
variants were made) under the table; ``--quick`` checks the first rows of each set only
and leaves docs/benchmarks.md alone; ``--sets FOLDER`` (e.g. ``resources/ood-confirm``,
sets kept apart to confirm a choice made on the first ones) writes its own section,
"ood-check-FOLDER"; ``--section NAME`` writes another, keeping the earlier table. A run
that checks fewer models than the section it would replace stops before it starts, naming
the rows it would drop (``--replace`` drops them). Exits 1 when a variant is outside the
budget.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, read_section, write_section  # noqa: E402

from slimpajama_gui.core.errors import UserError  # noqa: E402
from slimpajama_gui.core.runtime.predictor import ModelPredictor  # noqa: E402

SETS = Path(__file__).resolve().parents[1] / "resources" / "ood"
#: Rows per domain with --quick.
QUICK_ROWS = 24


@dataclass
class Domain:
    name: str
    texts: list[str]
    labels: np.ndarray  # (N,) 0 negative, 1 positive


@dataclass
class Checked:
    """One model on every domain: correct answers, predictions and [UNK] sentences."""

    name: str
    path: Path
    backend: str
    kept_ids: int
    predicted: dict[str, np.ndarray] = field(default_factory=dict)
    correct: dict[str, int] = field(default_factory=dict)
    with_unk: dict[str, int] = field(default_factory=dict)


def read_sets(folder: Path, rows: int | None = None) -> list[Domain]:
    """Every ``*.tsv`` of ``folder`` (header ``sentence<TAB>label``), sorted by name."""
    domains = []
    for path in sorted(Path(folder).glob("*.tsv")):
        with path.open(encoding="utf-8", newline="") as f:
            table = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        if not table or set(table[0]) != {"sentence", "label"}:
            raise UserError(f"{path} needs the header 'sentence<TAB>label'.")
        table = table[:rows] if rows else table
        labels = np.array([int(r["label"]) for r in table], dtype=np.int64)
        if not set(labels.tolist()) <= {0, 1}:
            raise UserError(f"{path}: labels must be 0 (negative) or 1 (positive).")
        domains.append(Domain(path.stem, [r["sentence"] for r in table], labels))
    if not domains:
        raise UserError(f"{folder} holds no .tsv check sets.")
    return domains


def variant_folders(results: Path) -> list[Path]:
    """The variant folders of a job's output folder, in step order."""
    found = sorted(p.parent for p in Path(results).glob("*/slimpajama.json"))
    if not found:
        raise UserError(f"{results} holds no variant folders (NN-step with a slimpajama.json).")
    return found


def _positive_index(label_names: list[str]) -> int:
    """Which output is "positive": by name when the model's labels say, else output 1."""
    names = [n.lower() for n in label_names]
    if len(names) != 2:
        raise UserError(f"the check sets are binary, but the model has {len(names)} labels.")
    for i, name in enumerate(names):
        if name in ("positive", "pos", "1", "label_1"):
            return i
    return 1


def check(path: Path, name: str, domains: list[Domain], batch_size: int = 32) -> Checked:
    """Run one model folder over every domain (as the Playground runs it)."""
    predictor = ModelPredictor(path, max_length=128, batch_size=batch_size)
    result = Checked(name, Path(path), predictor.backend, len(predictor.tokenizer))
    return _fill(result, predictor.scores, predictor.tokenizer, predictor.label_names, domains)


def _fill(result: Checked, scores, tokenizer, label_names, domains: list[Domain]) -> Checked:
    positive = _positive_index(label_names)
    for d in domains:
        probs = scores(d.texts).probs
        predicted = (probs.argmax(axis=1) == positive).astype(np.int64)
        result.predicted[d.name] = predicted
        result.correct[d.name] = int((predicted == d.labels).sum())
        ids = tokenizer(d.texts, truncation=True, max_length=128)["input_ids"]
        unk = tokenizer.unk_token_id
        result.with_unk[d.name] = sum(unk is not None and unk in row for row in ids)
    return result


def sweep_keep_general(
    teacher: Path, train: Path, values: list[int], domains: list[Domain], scratch: Path
) -> tuple[list[Checked], list[str]]:
    """The teacher with its vocabulary pruned (in memory) per ``keep_general`` value."""
    import torch

    from slimpajama_gui.core.model.tokenizers import load_tokenizer
    from slimpajama_gui.core.runtime.bench import count_parameters
    from slimpajama_gui.core.runtime.inputs import model_inputs
    from slimpajama_gui.core.runtime.loading import open_model
    from slimpajama_gui.core.runtime.predictor import Scores
    from slimpajama_gui.core.techniques.prune.vocabulary import prune_vocabulary

    handle = open_model(teacher)
    model = handle.load_model().eval()
    label_names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    with Path(train).open(encoding="utf-8", newline="") as f:
        texts = [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    checked, lines = [], []
    for n in values:
        out = scratch / f"tokenizer-{n}"
        pruned, report = prune_vocabulary(
            model, teacher, texts, out, keep_general=n, max_length=128
        )
        tok = load_tokenizer(out)
        inputs = model_inputs(pruned, tok, f"keep_general {n}")
        pruned.eval()

        def scores(batch_texts, pruned=pruned, tok=tok, inputs=inputs):
            rows = []
            with torch.inference_mode():
                for i in range(0, len(batch_texts), 32):
                    enc, _ = inputs.batch(batch_texts[i : i + 32], tok, 128)
                    rows.append(torch.softmax(pruned(**enc).logits.float(), -1).numpy())
            return Scores(np.concatenate(rows), label_names, 0.0)

        name = f"teacher, vocabulary keep_general {n:,}"
        result = Checked(name, teacher, "pytorch", report.kept)
        checked.append(_fill(result, scores, tok, label_names, domains))
        lines.append(
            f"- keep_general {n:,}: {report.kept:,} of {report.original:,} ids kept "
            f"({report.kept_general:,} for general text), "
            f"{count_parameters(pruned)[0] / 1e6:.2f} M parameters"
        )
        print(f"checked {name}", flush=True)
    return checked, lines


def _pct(n: int, total: int) -> float:
    return 100.0 * n / total if total else float("nan")


def table(checked: list[Checked], domains: list[Domain], budget: float) -> tuple[str, list[bool]]:
    """The markdown table (teacher first) and, per variant, whether it is within budget."""
    teacher = checked[0]
    total = sum(len(d.texts) for d in domains)
    head = ["model", "backend", "token ids"]
    head += [f"{d.name} acc (Δ)" for d in domains]
    head += ["pooled acc ± s.e. (Δ)", "flips vs teacher", "[UNK] sentences", f"within {budget}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts = []
    for c in checked:
        cells = [c.name, c.backend, f"{c.kept_ids:,}"]
        ok = True
        for d in domains:
            acc = _pct(c.correct[d.name], len(d.texts))
            delta = acc - _pct(teacher.correct[d.name], len(d.texts))
            ok &= delta >= -budget
            cells.append(f"{acc:.1f}" + ("" if c is teacher else f" ({delta:+.1f})"))
        pooled = sum(c.correct.values()) / total
        se = 100 * math.sqrt(pooled * (1 - pooled) / total)
        delta = 100 * pooled - _pct(sum(teacher.correct.values()), total)
        ok &= delta >= -budget
        cells.append(
            f"{100 * pooled:.1f} ± {se:.1f}" + ("" if c is teacher else f" ({delta:+.1f})")
        )
        flips = sum(int((c.predicted[d.name] != teacher.predicted[d.name]).sum()) for d in domains)
        unk = sum(c.with_unk.values())
        cells += [f"{flips} ({_pct(flips, total):.1f} %)", f"{_pct(unk, total):.1f} %"]
        cells.append("teacher" if c is teacher else ("yes" if ok else "**no**"))
        if c is not teacher:
            verdicts.append(ok)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), verdicts


def section_models(section: str) -> list[str]:
    """The model names in the first column of a section's table (the sweep's rows, which
    every run with the same options remakes, and the teacher left out)."""
    names = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not line.lstrip().startswith("|"):
            continue
        name = cells[0]
        if name in ("model", "teacher") or set(name) <= set("-: ") or "keep_general" in name:
            continue
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", type=Path, required=True, help="the uncompressed model")
    parser.add_argument("--variant", type=Path, action="append", default=[], help="a variant")
    parser.add_argument(
        "--results", type=Path, action="append", default=[], help="a job's output folder"
    )
    parser.add_argument("--sets", type=Path, default=SETS, help="folder of check sets (.tsv)")
    parser.add_argument("--budget", type=float, default=1.5, help="points allowed below")
    parser.add_argument("--note", default="", help="a line under the table: how they were made")
    parser.add_argument(
        "--keep-general",
        default="",
        help="comma-separated keep_general values to sweep on the teacher (needs --train)",
    )
    parser.add_argument("--train", type=Path, help="the training texts (.tsv, column sentence)")
    parser.add_argument(
        "--section",
        help="docs/benchmarks.md section to write (letters, digits, '-'; default ood-check, or "
        "ood-check-FOLDER for another --sets folder): a new name keeps an earlier run's table",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ROWS} rows per set, print the table, leave docs/benchmarks.md alone",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="let the run replace a section whose table has models this run does not check",
    )
    args = parser.parse_args(argv)
    if args.section is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", args.section):
        parser.error(
            f"--section {args.section!r}: use lower-case letters, digits and '-' (it names a "
            "docs/benchmarks.md section), e.g. ood-check-2026-12-02"
        )
    t0 = time.perf_counter()
    domains = read_sets(args.sets, QUICK_ROWS if args.quick else None)
    models = [args.teacher, *args.variant]
    for results in args.results:
        models += variant_folders(results)
    names = ["teacher"] + [f"{Path(p).parent.name}/{Path(p).name}" for p in models[1:]]
    section = args.section or (
        "ood-check" if args.sets.resolve() == SETS.resolve() else f"ood-check-{args.sets.name}"
    )
    if not args.quick and not args.replace:
        # A section holds the only record of models that may be gone since (their folders
        # deleted, the machine restarted): checking fewer must not erase their rows.
        dropped = [n for n in section_models(read_section(section) or "") if n not in names]
        if dropped:
            parser.error(
                f"docs/benchmarks.md section {section!r} has rows for {', '.join(dropped)}, "
                "which this run does not check; name a new section (--section NAME) to keep "
                "that table, add those models (--variant), or pass --replace to drop them"
            )
    checked = []
    for path, name in zip(models, names, strict=True):
        checked.append(check(path, name, domains))
        print(f"checked {name} ({path})", flush=True)
    sweep_lines: list[str] = []
    if args.keep_general:
        if args.train is None:
            parser.error("--keep-general needs --train (the texts the vocabulary is kept for)")
        import tempfile

        values = [int(v) for v in args.keep_general.split(",") if v.strip()]
        with tempfile.TemporaryDirectory(prefix="ood-check-") as scratch:
            swept, sweep_lines = sweep_keep_general(
                args.teacher, args.train, values, domains, Path(scratch)
            )
        checked += swept
    text, verdicts = table(checked, domains, args.budget)
    rows = ", ".join(f"{d.name} {len(d.texts)}" for d in domains)
    command = "python benchmarks/ood_check.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    # The default sets have their own section; another folder (a confirmation set) gets
    # one named after it, so checking it never replaces the first table.
    default = args.sets.resolve() == SETS.resolve()
    where = "resources/ood" if default else args.sets.name
    per_domain = min(len(d.texts) for d in domains)
    body = f"""## Out-of-domain checks ({section})

Accuracy on review sentences from outside SST-2 (`{where}`: {rows} rows, written
for this project), each model with its own tokenizer at 128 tokens, against the teacher
`{args.teacher}`. Δ = points against the teacher; s.e. = standard error of the pooled
accuracy; flips = sentences whose predicted label differs from the teacher's; [UNK]
sentences = share holding an [UNK] token. Within {args.budget} = every domain and the pooled
accuracy at most {args.budget} points below the teacher's. With {per_domain} rows a domain, one
sentence is {100 / per_domain:.1f} points: read the flips with the accuracy.

{text}

{chr(10).join(sweep_lines)}

{args.note}

Machine: {machine()}. Took {time.perf_counter() - t0:.0f} s.

    {command}
"""
    print(body)
    if not args.quick:
        write_section(section, body)
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
