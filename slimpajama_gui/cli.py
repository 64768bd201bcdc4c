"""`slimpajama`: the headless command line over the same engine as the app.

    slimpajama models [FOLDER...]         list the models the app can open
    slimpajama info MODEL                 describe a model from its headers
    slimpajama run RECIPE [--device D]    run a YAML recipe, print a results table
                                          (under torchrun: one process per rank, DDP)
    slimpajama eval MODEL DATA            accuracy of a classifier on a labelled file
    slimpajama bench MODEL                latency, throughput, size, memory
    slimpajama predict MODEL TEXT...      predicted label and probabilities
    slimpajama history                    recent jobs

MODEL is a folder, or "packaged" for the bundled MiniLM.
Exit codes: 0 success, 1 a problem with the input or a failed job (one sentence on
stderr), 2 wrong usage, 3 an internal error (traceback in the log file it names, or with --debug), 130 cancelled.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from slimpajama_gui import __version__, cli_search
from slimpajama_gui.cli_output import _console, _mb, _pct, _print_sensitivity, _print_table, _whole
from slimpajama_gui.cli_progress import ProgressCallbacks
from slimpajama_gui.core.data.tables import FORMATS as DATA_FORMATS
from slimpajama_gui.core.errors import UserError, error_sentence
from slimpajama_gui.core.paths import configure_file_log
from slimpajama_gui.core.techniques.quantize import int8_path

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
    from slimpajama_gui.core.techniques.train import Control

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
    print(f"Method: {r.method.replace(f'timed: {r.timed}; ', '')}; {r.versions}.")
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


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from slimpajama_gui.core.data.spec import MAX_LENGTH
    from slimpajama_gui.core.plan.steps import MAX_REPEATS, MAX_SENTENCES, MAX_THREADS

    max_length = _whole(4, MAX_LENGTH)
    parser = argparse.ArgumentParser(
        prog="slimpajama",
        description="SlimPajama Studio from the command line: inspect, fine-tune and measure text classifiers.",
        epilog='MODEL is a model folder, or "packaged" for the bundled MiniLM.',
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="describe a model from its config and safetensors headers (no weights loaded)",
                       description="Describe a model folder without loading its weights.")  # fmt: skip
    p.add_argument("model", metavar="MODEL", help='a model folder, or "packaged"')
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list the packaged model, the Hugging Face cache and FOLDERs",
                       description="List every model the app can open: the packaged MiniLM, the local "
                       "Hugging Face cache (never downloads), and any FOLDERs given.")  # fmt: skip
    p.add_argument("folders", nargs="*", metavar="FOLDER", help="extra folders to look in")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("run", help="run a YAML recipe and print a results table",
                       description="Run every step of a recipe (fine-tune, evaluate, benchmark), save each "
                       "variant in the recipe's output folder and record the job in the history. Under "
                       "torchrun (torchrun --nproc_per_node=N -m slimpajama_gui.cli run RECIPE) every "
                       "process trains on its share of each batch (DistributedDataParallel) and the "
                       "first one writes the results.")  # fmt: skip
    p.add_argument(
        "recipe", metavar="RECIPE", help="a recipe file, e.g. resources/recipes/demo.yaml"
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="where to train (default: the recipe's device; latency is always measured on CPU)")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="continue the failed or cancelled job that wrote to the recipe's output folder "
                   "at its first unfinished step, with this recipe (fix a failed step's settings first)")  # fmt: skip
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue a failed or cancelled job at its first unfinished step",
                       description="Continue a failed, cancelled or interrupted job in its own output folder: "
                       "the steps it finished are reused as saved (never written again) and the job runs on "
                       "from the first unfinished step.")  # fmt: skip
    p.add_argument(
        "job",
        metavar="JOB",
        help="the job's number (see 'slimpajama history') or its output folder",
    )
    p.add_argument("--recipe", metavar="RECIPE",
                   help="continue with this recipe instead of the recorded one (the finished steps, "
                   "model, data and output must be unchanged; later steps may differ)")  # fmt: skip
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="where to train (default: the recipe's device)")  # fmt: skip
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("rerun", help="run a recorded job again into a new folder, maybe from a step",
                       description="Run a recorded job's recipe again into a new folder beside its own "
                       "(OUT-run2, ...). With --from-step N the steps before N are taken from the job's "
                       "saved results (read, never changed) and only steps N and later run.")  # fmt: skip
    p.add_argument(
        "job",
        metavar="JOB",
        help="the job's number (see 'slimpajama history') or its output folder",
    )
    p.add_argument("--from-step", type=int, default=1, metavar="N",
                   help="first step to run, 1-based (default: 1, the whole recipe)")  # fmt: skip
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="where to train (default: the recipe's device)")  # fmt: skip
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("eval", help="accuracy, macro-F1 and confusion matrix of a classifier on DATA",
                       description="Evaluate a fine-tuned classifier on a labelled CSV/TSV/JSONL/Parquet file.")  # fmt: skip
    p.add_argument("model", metavar="MODEL", help="a fine-tuned model folder")
    p.add_argument("data", metavar="DATA", help="a labelled file")
    p.add_argument(
        "--text-column", default="sentence", help="column with the text (default: sentence)"
    )
    p.add_argument("--label-column", default="label", help="column with the label (default: label)")
    p.add_argument("--format", choices=DATA_FORMATS, default=None, help=FORMAT_HELP)
    p.add_argument(
        "--label-ids",
        action="store_true",
        help="labels in DATA are class ids, not the model's label names",
    )
    p.add_argument(
        "--max-length",
        type=max_length,
        default=128,
        help="truncate texts to this many tokens (default: 128)",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="latency p50/p95 at batch 1, throughput, size and memory of MODEL",
                       description="Benchmark a model on CPU with a fixed thread count, in its own runtime "
                       "(onnxruntime for ONNX variants). Sentences come from --data, else from the eval set "
                       "of the recipe that made MODEL, else from the demo set; the table says which.")  # fmt: skip
    p.add_argument("model", metavar="MODEL", help='a model folder, or "packaged"')
    p.add_argument(
        "--threads", type=_whole(1, MAX_THREADS), default=2, help="CPU threads (default: 2)"
    )
    p.add_argument(
        "--sentences",
        type=_whole(1, MAX_SENTENCES),
        default=200,
        help="sentences to time (default: 200)",
    )
    p.add_argument(
        "--repeats",
        type=_whole(1, MAX_REPEATS, zero="about 3 s"),
        default=0,
        help="passes over the sentences (default: 0 = about 3 s)",
    )
    p.add_argument(
        "--data",
        help="a file with the sentences to time (default: the eval set of the recipe that "
        "made MODEL, else the demo set)",
    )
    p.add_argument("--text-column", default="sentence", help="column with the text in --data")
    p.add_argument("--format", choices=DATA_FORMATS, default=None, help=FORMAT_HELP)
    p.add_argument(
        "--backend",
        choices=["auto", "pytorch", "onnxruntime"],
        default="auto",
        help="runtime (default: auto = onnxruntime for ONNX variants, else PyTorch)",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("predict", help="predicted label and class probabilities for each TEXT",
                       description="Print the predicted label, the class probabilities and the latency.")  # fmt: skip
    p.add_argument("model", metavar="MODEL", help="a fine-tuned model folder")
    p.add_argument("text", metavar="TEXT", nargs="+", help="one or more texts")
    p.add_argument(
        "--max-length",
        type=max_length,
        default=128,
        help="truncate to this many tokens (default: 128)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("history", help="recent jobs with their status and output",
                       description="List recent jobs from the job history (newest first).")  # fmt: skip
    p.add_argument(
        "--limit", type=_whole(1, 10_000), default=20, help="how many jobs (default: 20)"
    )
    p.set_defaults(func=cmd_history)
    cli_search.add_parser(sub)
    return parser


_log = logging.getLogger("slimpajama_gui.cli")


def _torchrun_rank() -> int | None:
    """This process's rank when torchrun started several, else None (read without
    importing torch, so commands that need no model start fast)."""
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return int(os.environ.get("RANK", "0"))
    except ValueError:  # `slimpajama run` names the bad variable
        pass
    return None


def _without_traceback(record: logging.LogRecord) -> bool:
    # A failure logged with its traceback reaches the user as a sentence by its own
    # path; the traceback is for the log file (and for --debug).
    return record.exc_info is None


def _configure_logging(debug: bool) -> list[logging.Handler]:
    """Warnings on stderr (everything with --debug), and the same rotating log file as
    the app's at ``<data dir>/logs/slimpajama.log``; returns the handlers added.

    Under torchrun only rank 0 writes the log file; other ranks' lines on stderr say
    their rank."""
    root = logging.getLogger()
    added: list[logging.Handler] = []
    console = logging.StreamHandler(sys.stderr)
    rank = _torchrun_rank()
    prefix = f"[rank {rank}] " if rank is not None else ""
    console.setFormatter(logging.Formatter(f"{prefix}%(levelname)s %(message)s"))
    console.setLevel(logging.DEBUG if debug else logging.WARNING)
    if not debug:
        console.addFilter(_without_traceback)
    root.addHandler(console)
    added.append(console)
    if rank:  # one log file, one writer
        root.setLevel(logging.DEBUG if debug else logging.INFO)
        return added
    try:
        before = list(root.handlers)
        handler = configure_file_log(logging.DEBUG if debug else logging.INFO)
        if handler not in before:
            added.append(handler)
    except OSError as exc:  # an unwritable data folder must not stop a command
        _log.warning("No log file: %s", exc)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    return added


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    root_level = logging.getLogger().level
    handlers = _configure_logging(args.debug)
    # The pipeline reports a new classifier head itself, in one sentence. (The model's
    # loading and saving log under core.model: checkpoints.py and saving.py.)
    quiet = logging.getLogger("slimpajama_gui.core.model")
    level = quiet.level
    if not args.debug:
        quiet.setLevel(logging.ERROR)
    try:
        int8_path.check_setting()  # a mistyped override fails now, not after training
        from slimpajama_gui.core.storage.leftovers import recover_outputs

        if not _torchrun_rank():  # rank 0 (or the only process) owns the outputs
            recover_outputs()  # F4/O3: what a killed save left is put back or cleared
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a sentence
        if args.debug:
            raise
        # The same path from exception to sentence as the app's (core/errors.py): the
        # traceback goes to the log file, whose path the sentence names.
        sentence = error_sentence(exc, f"slimpajama {args.command}", logger=_log)
        if isinstance(exc, OSError):  # a full disk or a refused permission: the user's
            print(f"error: {sentence}", file=sys.stderr)
            return EXIT_INPUT
        print(f"internal error: {sentence} (--debug shows it here)", file=sys.stderr)
        return EXIT_BUG
    finally:
        quiet.setLevel(level)
        root = logging.getLogger()
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(root_level)


if __name__ == "__main__":
    sys.exit(main())
