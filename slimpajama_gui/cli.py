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
import contextlib
import logging
import os
import sys

from slimpajama_gui import __version__, cli_search
from slimpajama_gui.cli_commands import (  # noqa: F401 - re-exported: tests and cli_search use cli.X
    EVAL_FLAGS,
    EXIT_BUG,
    EXIT_CANCELLED,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_USAGE,
    FORMAT_HELP,
    MEASURING_STEPS,
    PACKAGED,
    _load_classifier,
    _model_path,
    _report,
    _resume,
    _run_distributed,
    cmd_bench,
    cmd_eval,
    cmd_history,
    cmd_info,
    cmd_models,
    cmd_predict,
    cmd_rerun,
    cmd_resume,
    cmd_run,
)
from slimpajama_gui.cli_output import _whole
from slimpajama_gui.core.data.tables import FORMATS as DATA_FORMATS
from slimpajama_gui.core.errors import UserError, error_sentence
from slimpajama_gui.core.paths import configure_file_log
from slimpajama_gui.core.techniques.quantize import int8_path

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
    _max_steps_option(p)
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
    _max_steps_option(p)
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
    _max_steps_option(p)
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


@contextlib.contextmanager
def _step_cap(steps: int | None):
    """--max-steps N: the pipeline's step cap (the job's log says it was applied) while
    the command runs, and the environment as it was afterwards."""
    if steps is None:
        yield
        return
    from slimpajama_gui.core.techniques.train import MAX_STEPS_ENV

    before = os.environ.get(MAX_STEPS_ENV)
    os.environ[MAX_STEPS_ENV] = str(steps)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MAX_STEPS_ENV, None)
        else:
            os.environ[MAX_STEPS_ENV] = before


def _steps(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of steps: give a whole number, 1 or more"
        )
    return value


def _max_steps_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-steps", type=_steps, default=None, metavar="N",
                   help="stop every training loop after N optimizer steps, for a quick try of "
                   "the recipe: its accuracies are a smoke run's (default: the recipe's own)")  # fmt: skip


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
        with _step_cap(getattr(args, "max_steps", None)):
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
