"""`slimpajama`: the headless command line.

    slimpajama models            list the models the app can open
    slimpajama info MODEL        what a model is, read from its headers (MODEL: a folder or "packaged")

Exit codes: 0 success, 1 a problem with the input (one sentence on stderr),
2 wrong usage, 3 an internal error (traceback with --debug).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from slimpajama_gui import __version__
from slimpajama_gui.core.errors import UserError

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3


def _resolve_model(spec: str) -> Path:
    from slimpajama_gui.core.models import packaged_minilm_path

    return packaged_minilm_path() if spec in {"packaged", "minilm"} else Path(spec)


def _fmt_row(cells, widths) -> str:
    return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))


def cmd_info(args: argparse.Namespace) -> int:
    from slimpajama_gui.core.models import inspect_model

    path = _resolve_model(args.model)
    info = inspect_model(
        path, source="packaged" if args.model in {"packaged", "minilm"} else "folder"
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
        ("Heads", heads[0] if len(set(heads)) == 1 else "/".join(map(str, heads))),
        ("FFN width", "/".join(map(str, sorted(set(info.layer_ffn))))),
        ("Vocabulary", f"{info.vocab:,}"),
        ("Labels", info.num_labels or "none (encoder only)"),
        ("Weights dtype", info.dtype),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from slimpajama_gui.core.models import discover_models

    infos, skipped = discover_models([Path(p) for p in args.folders])
    header = ("NAME", "FAMILY", "PARAMS", "SIZE", "LAYERS", "SOURCE", "PATH")
    rows = [
        (
            i.name,
            i.family,
            f"{i.parameters / 1e6:.1f} M",
            f"{i.size_bytes / 1e6:.1f} MB",
            i.layers,
            i.source,
            i.path,
        )
        for i in infos
    ]
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    print(_fmt_row(header, widths))
    for row in rows:
        print(_fmt_row(row, widths))
    for sentence in skipped:
        print(f"skipped: {sentence}", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slimpajama",
        description="SlimPajama Studio from the command line: inspect and compress text classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser(
        "info",
        help="describe a model from its config and safetensors headers (no weights loaded)",
        description="Describe a model folder without loading its weights.",
    )
    info.add_argument(
        "model", metavar="MODEL", help='a model folder, or "packaged" for the bundled MiniLM'
    )
    info.set_defaults(func=cmd_info)

    models = sub.add_parser(
        "models",
        help="list the packaged model, models in the Hugging Face cache, and FOLDERS",
        description="List every model the app can open: the packaged MiniLM, the local "
        "Hugging Face cache (never downloads), and any FOLDERS given.",
    )
    models.add_argument("folders", nargs="*", metavar="FOLDER", help="extra folders to look in")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(message)s"
    )
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a sentence
        if args.debug:
            raise
        print(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
