"""The `slimpajama` subcommands (`cmd_*`), the exit codes and their helpers; the parser
that dispatches to them and `main` are in cli.py."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from slimpajama_gui.cli_output import _console, _mb, _pct, _print_sensitivity, _print_table
from slimpajama_gui.cli_progress import ProgressCallbacks
from slimpajama_gui.core.errors import UserError

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_BUG, EXIT_CANCELLED = 0, 1, 2, 3, 130
PACKAGED = {"packaged", "minilm"}
#: The data file's format, when its suffix does not say (.txt, no suffix).
FORMAT_HELP = "the data file's format when its suffix does not say (default: from the suffix)"
#: How `eval` names the dataset fields in its sentences: its flags, not recipe keys.
EVAL_FLAGS = {
    "text_column": "--text-column",
    "label_column": "--label-column",
    "format": "--format",
}
#: Steps that measure the current model rather than change it.
MEASURING_STEPS = {"evaluate", "benchmark", "sensitivity"}


def _model_path(spec: str) -> Path:
    from slimpajama_gui.core.model.catalog import packaged_minilm_path

    return packaged_minilm_path() if spec in PACKAGED else Path(spec)


# --------------------------------------------------------------------------- commands


def cmd_info(args: argparse.Namespace) -> int:
    from slimpajama_gui.core.model.inspection import inspect_model

    info = inspect_model(
        _model_path(args.model), source="packaged" if args.model in PACKAGED else "folder"
    )
    heads = info.layer_heads
    rows = [
        ("Name", info.name),
        ("Family", info.family),
        ("Folder", info.path),
        ("Parameters", f"{info.parameters:,} ({info.parameters / 1e6:.1f} M)"),
        ("Embedding parameters", f"{info.embedding_params:,}"),
        ("Size on disk", f"{info.size_bytes / 1e6:.1f} MB"),
        ("Layers", info.layers),
        ("Hidden size", info.hidden),
        # A static-embedding model has no layers: "none", never an index error.
        ("Heads", heads[0] if len(set(heads)) == 1 else "/".join(map(str, heads)) or "none"),
        (
            "FFN width",
            "/".join(map(str, info.layer_ffn)) or "none"
            if len(set(info.layer_ffn)) != 1
            else info.layer_ffn[0],
        ),
        ("Vocabulary", f"{info.vocab:,}"),
        ("Labels", info.num_labels or "none (encoder only)"),
        ("Weights dtype", info.dtype),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from slimpajama_gui.core.model.catalog import discover_models

    infos, skipped = discover_models([Path(p) for p in args.folders])
    rows = [
        [
            i.name,
            i.family,
            f"{i.parameters / 1e6:.1f} M",
            _mb(i.size_bytes),
            i.layers,
            i.source,
            i.path,
        ]
        for i in infos
    ]
    _print_table(
        _console(), "Models", ["Name", "Family", "Params", "Size", "Layers", "Source", "Path"], rows
    )
    for sentence in skipped:
        print(f"skipped: {sentence}", file=sys.stderr)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from slimpajama_gui.core.jobs.pipeline import run
    from slimpajama_gui.core.plan.recipe import load_recipe
    from slimpajama_gui.core.techniques import distributed

    recipe = load_recipe(Path(args.recipe))
    if distributed.launched():
        if args.resume:
            raise UserError(
                "--resume continues a job in one process; run `slimpajama run RECIPE "
                "--resume` without torchrun, or start the recipe anew under torchrun."
            )
        return _run_distributed(args, recipe)
    if args.resume:
        return _resume(args, recipe.resolve_path(recipe.output), recipe)
    console = _console()
    result = run(recipe, ProgressCallbacks(console), device=args.device)
    return _report(console, result)


def _run_distributed(args: argparse.Namespace, recipe) -> int:
    """One rank of a torchrun launch: every rank trains; rank 0 prints, writes, records.

    SIGTERM or Ctrl+C on any rank asks every rank to stop at the next optimizer step
    (torchrun passes a signal it gets on to every rank).
    """
    import signal

    from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, run
    from slimpajama_gui.core.techniques import distributed
    from slimpajama_gui.core.techniques.hooks import Control

    group = distributed.start(args.device or recipe.device)
    control = Control()

    def stop(signum, frame) -> None:
        control.request_stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        console = _console()
        callbacks = ProgressCallbacks(console) if group.is_main else PipelineCallbacks()
        result = run(recipe, callbacks, control, device=args.device)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        distributed.stop()
    if group.is_main:
        return _report(console, result)
    return {"done": EXIT_OK, "cancelled": EXIT_CANCELLED}.get(result.status, EXIT_INPUT)


def cmd_resume(args: argparse.Namespace) -> int:
    from slimpajama_gui.core.plan.recipe import load_recipe

    recipe = load_recipe(Path(args.recipe)) if args.recipe else None
    return _resume(args, args.job, recipe)


def _resume(args: argparse.Namespace, job_spec, recipe) -> int:
    """Continue a failed/cancelled job at its first unfinished step (core/jobs/resume.py)."""
    from slimpajama_gui.core.jobs.pipeline import run
    from slimpajama_gui.core.jobs.resume import find_job, plan_resume
    from slimpajama_gui.core.storage.history import JobStore

    console = _console()
    with JobStore() as store:
        job = find_job(store, job_spec)
        plan = plan_resume(store, job.id, recipe)
        console.print(f"Job {job.id} {plan.describe()}.")
        result = run(plan.recipe, ProgressCallbacks(console), store=store, device=args.device,
                     resume=plan)  # fmt: skip
    return _report(console, result)


def cmd_rerun(args: argparse.Namespace) -> int:
    """Run a recorded job's recipe again into a new folder, maybe from a step."""
    from slimpajama_gui.core.jobs.pipeline import recipe_for_rerun, run
    from slimpajama_gui.core.jobs.resume import check_rerun_from, find_job
    from slimpajama_gui.core.storage.history import JobStore

    console = _console()
    with JobStore() as store:
        job = find_job(store, args.job)
        taken = [j.output for j in store.list_jobs(limit=100_000) if j.output]
        recipe = recipe_for_rerun(job, taken=taken)
        first = args.from_step - 1
        if first > 0:
            check_rerun_from(store, job.id, first)
        console.print(f"Re-running job {job.id} into {recipe.output}")
        result = run(recipe, ProgressCallbacks(console), store=store, device=args.device,
                     rerun_from=(job.id, first) if first > 0 else None)  # fmt: skip
    return _report(console, result)


def _report(console, result) -> int:
    """The results table of a job and its exit code."""
    # One row per model: the source (if measured before any change) and each variant.
    variants: list[dict[str, Any]] = []
    for row in result.summary:
        if row["step"] not in MEASURING_STEPS or not variants:
            label = "source model" if row["step"] in MEASURING_STEPS else row["step"]
            variants.append({"model": label})
        variants[-1].update({k: v for k, v in row.items() if k != "step"})
    rows = [
        [
            v["model"],
            _pct(v.get("accuracy")),
            "–" if v.get("macro_f1") is None else f"{100 * v['macro_f1']:.2f}",
            _mb(v.get("size_bytes")),
            "–" if v.get("parameters") is None else f"{v['parameters'] / 1e6:.1f} M",
            "–" if v.get("latency_p50_ms") is None else f"{v['latency_p50_ms']:.2f} ms",
            "–" if v.get("latency_p95_ms") is None else f"{v['latency_p95_ms']:.2f} ms",
            "–" if v.get("throughput_per_s") is None else f"{v['throughput_per_s']:.0f}/s",
        ]
        for v in variants
    ]
    _print_table(
        console,
        f"Job {result.job_id}: {result.status} in {result.seconds:.0f} s",
        [
            "Model",
            "Eval accuracy",
            "Macro-F1",
            "Size",
            "Params",
            "p50 (batch 1)",
            "p95 (batch 1)",
            "Throughput (batch 32)",
        ],
        rows,
    )
    for row in result.summary:
        if row.get("step") == "sensitivity" and row.get("report"):
            _print_sensitivity(console, Path(row["report"]))
    if result.final:
        console.print(f"Result: {result.final}")
    if result.status == "failed":
        where = f" in {result.failed_step}" if result.failed_step else ""
        print(f"error: job {result.job_id} failed{where}: {result.error}", file=sys.stderr)
        return EXIT_INPUT
    if result.status == "cancelled":
        print(f"job {result.job_id} cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    return EXIT_OK


def _load_classifier(spec: str):
    from slimpajama_gui.core.runtime.inputs import model_inputs
    from slimpajama_gui.core.runtime.loading import open_model

    handle = open_model(_model_path(spec))
    model = handle.load_model()
    if getattr(model, "load_report", None) is not None and model.load_report.new_keys:
        raise UserError(
            f"{handle.info.path} has no trained classifier head (it is an encoder only); "
            "fine-tune it first, e.g. `slimpajama run resources/recipes/demo.yaml`."
        )
    tokenizer = handle.load_tokenizer()
    return handle, model, tokenizer, model_inputs(model, tokenizer, handle.info.name)


def cmd_eval(args: argparse.Namespace) -> int:
    from slimpajama_gui.core import data as data_mod
    from slimpajama_gui.core.runtime.evaluate import classification_report, predict
    from slimpajama_gui.core.runtime.inputs import check_job_inputs

    if not Path(args.data).is_file():  # before the loader's recipe-worded sentence
        raise UserError(
            f"DATA {args.data} is not a file; give the path of a labelled CSV, TSV, JSONL "
            "or Parquet file (relative paths are read from the current folder)."
        )
    handle, model, tokenizer, _ = _load_classifier(args.model)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    spec = data_mod.DatasetSpec(
        train=args.data, eval=args.data, text_column=args.text_column, label_column=args.label_column,
        labels=names if not args.label_ids else None, max_length=args.max_length,
        format=args.format,
    )  # fmt: skip
    ds = data_mod.load_dataset(
        spec, base_dir=Path.cwd(), labels_from=None if args.label_ids else handle.info.name,
        fields=EVAL_FLAGS,
    )  # fmt: skip
    for w in ds.warnings:
        print(f"warning: {w}", file=sys.stderr)
    inputs, notes = check_job_inputs(
        model, tokenizer, ds, name=handle.info.name, max_length=args.max_length,
        setting="--max-length",
    )  # fmt: skip
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    enc = inputs.encode_split(ds.eval, tokenizer, args.max_length)
    for w in enc.warnings:
        print(f"warning: {w}", file=sys.stderr)
    batches = data_mod.batches(
        enc, ds.eval.labels, 64, False, 0, tokenizer.pad_token_id or 0, sort_by_length=True
    )
    t0 = time.perf_counter()
    report = classification_report(predict(model, batches), ds.label_names)
    seconds = time.perf_counter() - t0
    console = _console()
    _print_table(
        console,
        f"{handle.info.name} on {args.data} ({report.n} rows, {seconds:.1f} s)",
        ["Class", "Precision", "Recall", "F1", "Support"],
        [
            [k, f"{v.precision:.3f}", f"{v.recall:.3f}", f"{v.f1:.3f}", v.support]
            for k, v in report.per_class.items()
        ],
    )
    console.print(f"Accuracy {_pct(report.accuracy)}   macro-F1 {100 * report.macro_f1:.2f}")
    console.print("Confusion (rows: true, columns: predicted): " + str(report.confusion))
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from slimpajama_gui.core import data as data_mod
    from slimpajama_gui.core.runtime.bench import (
        BenchConfig,
        benchmark,
        read_timed_text,
        recorded_eval_text,
        runner_for,
    )
    from slimpajama_gui.core.runtime.inputs import model_inputs
    from slimpajama_gui.core.runtime.loading import open_model

    handle = open_model(_model_path(args.model))
    model = handle.load_model(threads=args.threads)
    tokenizer = handle.load_tokenizer()
    inputs = model_inputs(model, tokenizer, handle.info.name)
    # The text the docs and the variant's own benchmark step time, where its recipe
    # says; the demo dev set only when nothing does.
    if args.data:
        text = read_timed_text(
            Path(args.data), args.text_column, field_name="--text-column",
            format=args.format, format_field="--format",
        )  # fmt: skip
    else:
        text = recorded_eval_text(handle.info.path) or read_timed_text(
            data_mod.demo_path("dev"),
            "sentence",
            "the demo set: the model's record names no eval file",
        )
    config = BenchConfig(
        threads=args.threads,
        sentences=args.sentences,
        repeats=None if args.repeats == 0 else args.repeats,
    )
    config.max_length = inputs.fit_length(config.max_length)
    with tempfile.TemporaryDirectory(prefix="slimpajama-bench-") as scratch:
        runner = runner_for(
            model, backend=args.backend, threads=args.threads, export_dir=Path(scratch)
        )
        r = benchmark(
            runner, tokenizer, text.sentences, config, folder=handle.info.path, source=text.source
        )
    _print_table(
        _console(),
        f"{handle.info.name}",
        ["Measure", "Value"],
        [
            ["backend", f"{r.backend} ({r.versions})"],
            ["threads", str(r.threads)],
            ["latency p50 (batch 1)", f"{r.latency_p50_ms:.2f} ms"],
            ["latency p95 (batch 1)", f"{r.latency_p95_ms:.2f} ms"],
            [
                f"throughput (batch {r.throughput_batch})",
                f"{r.throughput_per_s:.0f} sentences/s",
            ],
            ["size on disk", _mb(r.size_bytes)],
            ["parameters (non-zero)", f"{r.parameters:,} ({r.nonzero_parameters:,})"],
            ["peak resident memory", f"{r.peak_rss_mb:.0f} MB"],
        ],
    )
    # On lines of their own: a long data path would wrap inside the table.
    print(f"Timed: {r.timed}.")
    print(f"Method: {r.procedure}; {r.versions}.")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from slimpajama_gui.core.runtime.predictor import ModelPredictor

    predictor = ModelPredictor(
        _model_path(args.model),
        max_length=args.max_length,
        no_head_hint="fine-tune it first, e.g. `slimpajama run resources/recipes/demo.yaml`.",
    )
    note = predictor.length_note("--max-length")
    if note:
        print(f"note: {note}", file=sys.stderr)
    names = predictor.label_names
    for number, text in enumerate(args.text, 1):
        if not text.strip():
            print(
                f"warning: TEXT {number} is empty: the model reads only its special tokens, "
                "so its answer says nothing about a text.",
                file=sys.stderr,
            )
        # One text per forward pass, so each line's latency is its own (batch 1).
        scores = predictor.scores([text])
        for w in scores.warnings:
            print(f"warning: {w}", file=sys.stderr)
        probs = scores.probs[0].tolist()
        best = max(range(len(probs)), key=probs.__getitem__)
        shown = "  ".join(f"{n} {p:.3f}" for n, p in zip(names, probs, strict=True))
        print(f"{names[best]}\t{shown}\t({scores.ms:.1f} ms)\t{text}")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from slimpajama_gui.core.storage.history import JobStore

    with JobStore() as store:
        jobs = store.list_jobs(limit=args.limit)
    rows = []
    for j in jobs:
        took = f"{j.finished_at - j.started_at:.0f} s" if j.finished_at and j.started_at else "–"
        rows.append(
            [
                j.id,
                j.name,
                j.status,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(j.created_at)),
                took,
                j.output or "",
                j.error or "",
            ]
        )
    if not rows:
        print("No jobs yet. Run one with: slimpajama run resources/recipes/demo.yaml")
        return EXIT_OK
    _print_table(
        _console(), "Jobs", ["Id", "Name", "Status", "Created", "Took", "Output", "Error"], rows
    )
    return EXIT_OK
