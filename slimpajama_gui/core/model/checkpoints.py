"""Reading model folders: Hugging Face BERT / RoBERTa checkpoints and our own.

:func:`load_pretrained` (behind :meth:`EncoderClassifier.from_pretrained`) reads
``config.json`` with :func:`read_config` (checked, never executed) and the safetensors
weights (single file or sharded; pickles are refused), renames the tensors to ours and
refuses weights that do not fit the config, naming the keys.

Parameter names (ours, left) and where they come from in a Hugging Face checkpoint
(right; BERT keys may carry a ``bert.`` prefix, RoBERTa keys a ``roberta.`` prefix):

Parameter names (ours, left) and where they come from in a Hugging Face checkpoint
(right; BERT keys may carry a ``bert.`` prefix, RoBERTa keys a ``roberta.`` prefix):

============================================  ==================================================
SlimPajama                                    Hugging Face BERT / RoBERTa
============================================  ==================================================
embeddings.word_embeddings                    embeddings.word_embeddings
embeddings.position_embeddings                embeddings.position_embeddings
embeddings.token_type_embeddings              embeddings.token_type_embeddings
embeddings.layer_norm                         embeddings.LayerNorm
layers.{i}.attention.query / key / value      encoder.layer.{i}.attention.self.query / key / value
layers.{i}.attention.output                   encoder.layer.{i}.attention.output.dense
layers.{i}.attention_norm                     encoder.layer.{i}.attention.output.LayerNorm
layers.{i}.ffn.intermediate                   encoder.layer.{i}.intermediate.dense
layers.{i}.ffn.output                         encoder.layer.{i}.output.dense
layers.{i}.ffn_norm                           encoder.layer.{i}.output.LayerNorm
pooler.dense                                  pooler.dense (RoBERTa classifier: classifier.dense)
classifier                                    classifier (RoBERTa classifier: classifier.out_proj)
============================================  ==================================================


Each name is followed by ``.weight`` / ``.bias``. The table is ``NAME_TABLE`` below and
drives both loading and :func:`~slimpajama_gui.core.model.saving.export_transformers`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.config import CONFIG_FORMAT, EncoderConfig
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.model.hf_config import (
    Translation,
    head_refusal,
    shape_keys,
    specific_label_names,
    translate,
)
from slimpajama_gui.core.model.inspection import SUPPORTED_FAMILIES, damaged_folder
from slimpajama_gui.core.storage.safe_io import load_safetensors, no_weights_error, read_json_object

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


@dataclass
class LoadReport:
    """How a checkpoint's tensors were used by :meth:`EncoderClassifier.from_pretrained`.

    Attributes:
        source: the folder read.
        family: its ``model_type`` ("bert", "roberta", "slimpajama").
        new_keys: our parameters that were freshly initialised (only ever the
            classifier head); the model must be fine-tuned before its logits mean
            anything.
        ignored_keys: tensors in the checkpoint that this model does not use (e.g. a
            masked-LM head, ``embeddings.position_ids``, a replaced classifier).
    """

    source: Path
    family: str
    new_keys: list[str] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)


NAME_TABLE: tuple[tuple[str, str], ...] = (
    ("embeddings.word_embeddings", "embeddings.word_embeddings"),
    ("embeddings.position_embeddings", "embeddings.position_embeddings"),
    ("embeddings.token_type_embeddings", "embeddings.token_type_embeddings"),
    ("embeddings.LayerNorm", "embeddings.layer_norm"),
    ("encoder.layer.{i}.attention.self.query", "layers.{i}.attention.query"),
    ("encoder.layer.{i}.attention.self.key", "layers.{i}.attention.key"),
    ("encoder.layer.{i}.attention.self.value", "layers.{i}.attention.value"),
    ("encoder.layer.{i}.attention.output.dense", "layers.{i}.attention.output"),
    ("encoder.layer.{i}.attention.output.LayerNorm", "layers.{i}.attention_norm"),
    ("encoder.layer.{i}.intermediate.dense", "layers.{i}.ffn.intermediate"),
    ("encoder.layer.{i}.output.dense", "layers.{i}.ffn.output"),
    ("encoder.layer.{i}.output.LayerNorm", "layers.{i}.ffn_norm"),
    ("pooler.dense", "pooler.dense"),
)


def _compile(template: str) -> re.Pattern[str]:
    body = re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)")
    return re.compile(rf"^{body}\.(?P<p>weight|bias)$")


_FROM_HF = [(_compile(hf), ours) for hf, ours in NAME_TABLE]
_TO_HF = [(_compile(ours), hf) for hf, ours in NAME_TABLE]


def _rename(key: str, table: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, template in table:
        m = pattern.match(key)
        if m:
            layer = m.group("i") if "i" in pattern.groupindex else ""
            return f"{template.format(i=layer)}.{m.group('p')}"
    return None


@dataclass(frozen=True)
class _Family:
    """How one Hugging Face encoder family's tensors map onto :class:`EncoderClassifier`.

    What its config.json may say (architectures, defaults, positions) is in
    :data:`hf_config.FAMILIES`.
    """

    name: str
    prefix: str  # base-model key prefix in task checkpoints, e.g. "bert."
    head: dict[str, str]  # sequence-classifier tensors -> our names


_FAMILIES: dict[str, _Family] = {
    "bert": _Family(
        name="bert",
        prefix="bert.",
        head={"classifier.weight": "classifier.weight", "classifier.bias": "classifier.bias"},
    ),
    "roberta": _Family(
        name="roberta",
        prefix="roberta.",
        head={
            "classifier.dense.weight": "pooler.dense.weight",
            "classifier.dense.bias": "pooler.dense.bias",
            "classifier.out_proj.weight": "classifier.weight",
            "classifier.out_proj.bias": "classifier.bias",
        },
    ),
}


def read_config(folder: Path) -> dict[str, Any]:
    """Read ``folder/config.json`` and refuse anything that asks to run code.

    Raises:
        UserError: the file is missing or not a JSON object, or it names
            ``auto_map``, ``trust_remote_code`` or a hub repo as
            ``attn_implementation``.
    """
    path = Path(folder) / "config.json"
    raw = read_json_object(
        path,
        missing=f"config.json not found in {folder}; choose the folder of a Hugging Face model.",
        advice="fix it or copy the model folder again from its source.",
    )

    refused = []
    if "auto_map" in raw:
        refused.append("auto_map")
    if raw.get("trust_remote_code"):
        refused.append("trust_remote_code")
    for key in ("attn_implementation", "_attn_implementation"):
        value = raw.get(key)
        if isinstance(value, str) and "/" in value:
            refused.append(f"{key}={value!r}")
    if refused:
        raise UserError(
            f"{path} asks to run code that ships with the model or from the hub "
            f"({', '.join(refused)}); SlimPajama Studio never runs such code. Use a "
            "model with a standard architecture, or remove these keys if you trust it."
        )
    return raw


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of ``folder``'s safetensors weights (single file or sharded)."""
    single = folder / WEIGHTS_NAME
    if single.is_file():
        return load_safetensors(single)
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise UserError(
                f"{index} is not a valid safetensors index (it has no weight_map); copy "
                "the model folder again."
            )
        shards = sorted({str(v) for v in weight_map.values()})
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            # Shard names come from the file; refuse anything that leaves the folder.
            if (
                not isinstance(shard, str)
                or Path(shard).name != shard
                or not shard.endswith(".safetensors")
            ):
                raise UserError(f"{index} names a shard {shard!r} outside the model folder.")
            if not (folder / shard).is_file():
                raise UserError(
                    f"{index} lists {shard} but it is not in {folder}; copy the folder again."
                )
            tensors.update(load_safetensors(folder / shard))
        return tensors
    raise no_weights_error(
        folder,
        f"no model.safetensors in {folder}; SlimPajama Studio reads weights from "
        "safetensors files only.",
    )


def _hf_checkpoint(
    folder: Path, raw: dict[str, Any], family: _Family
) -> tuple[EncoderConfig, dict[str, torch.Tensor], list[str], Translation]:
    where = str(folder / "config.json")
    translation = translate(raw, family.name, where)
    try:
        config = EncoderConfig(**translation.fields)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from exc
    archs = raw.get("architectures") or []
    # Only a sequence classifier's head is ours to reuse; a token-classification or QA
    # head has the same key names but a different meaning.
    seq_cls = not archs or any(str(a).endswith("ForSequenceClassification") for a in archs)
    tensors = _load_weights(folder)
    head: dict[str, torch.Tensor] = {}
    mapped: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    unused_layers: set[int] = set()
    for key, tensor in tensors.items():
        if seq_cls and key in family.head:
            head[family.head[key]] = tensor
            continue
        base = key[len(family.prefix) :] if key.startswith(family.prefix) else key
        # TF-converted BERT checkpoints name LayerNorm parameters gamma/beta.
        base = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", base)
        base = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", base)
        ours = _rename(base, _FROM_HF)
        layer = re.match(r"layers\.(\d+)\.", ours or "")
        if ours is None:
            ignored.append(key)
        elif layer and int(layer.group(1)) >= config.num_layers:
            # transformers builds num_hidden_layers layers and leaves the rest unused.
            unused_layers.add(int(layer.group(1)))
            ignored.append(key)
        elif ours in mapped:
            raise UserError(
                f"the weights in {folder} hold two tensors for {ours} "
                "(with and without the model prefix); keep one."
            )
        else:
            mapped[ours] = tensor
    if unused_layers:
        logger.warning(
            "%s: num_hidden_layers is %d, so the weights' layers %s are not used "
            "(as transformers does).",
            where,
            config.num_layers,
            ", ".join(map(str, sorted(unused_layers))),
        )
    # A RoBERTa classifier's dense layer replaces any pretraining pooler.
    for ours, tensor in head.items():
        if ours in mapped:
            ignored.append(family.prefix + ours)
        mapped[ours] = tensor
    config.has_pooler = "pooler.dense.weight" in mapped or "pooler.dense.bias" in mapped
    if "classifier.weight" in mapped and not translation.num_labels_given:
        config.num_labels = mapped["classifier.weight"].shape[0]
        config.id2label = {}
        config.__post_init__()
    return config, mapped, ignored, translation


def _slim_checkpoint(
    folder: Path, raw: dict[str, Any]
) -> tuple[EncoderConfig, dict[str, torch.Tensor], list[str], None]:
    try:
        config = EncoderConfig.from_dict(raw)
    except UserError as exc:
        raise UserError(f"{folder / 'config.json'}: {exc}") from exc
    return config, _load_weights(folder), [], None


def _list_keys(keys: Iterable[str], limit: int = 10) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (
        f" … and {len(keys) - limit} more ({len(keys)} in all)" if len(keys) > limit else ""
    )


def mismatch_problems(
    *, wrong: list[str], missing: list[str], unexpected: list[str], wrong_what: str = "shape"
) -> list[str]:
    """One clause per kind of key mismatch between a weight file and its model, e.g.
    ``"2 missing: a.weight, b.weight"``; empty when everything matches."""
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} with the wrong {wrong_what}: {_list_keys(wrong)}")
    if missing:
        problems.append(f"{len(missing)} missing: {_list_keys(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} not in the model: {_list_keys(unexpected)}")
    return problems


def _check_match(
    folder: Path,
    expected: dict[str, torch.Tensor],
    provided: dict[str, torch.Tensor],
    allowed_missing: set[str],
    family: str,
) -> None:
    """Refuse weights that do not fit the model built from the config.

    Every config.json feature that changes a shape was translated or refused before
    this point, so a mismatch here means config.json describes another model; the
    message names the keys that set each wrong shape.
    """
    missing = [k for k in expected if k not in provided and k not in allowed_missing]
    unexpected = [k for k in provided if k not in expected]
    held = {int(m.group(1)) for k in provided if (m := re.match(r"layers\.(\d+)\.", k))}
    wanted = {int(m.group(1)) for k in expected if (m := re.match(r"layers\.(\d+)\.", k))}
    if held and held == set(range(len(held))) and held < wanted:
        # Whole top layers missing: config.json counts more layers than the file holds
        # (transformers would give them random weights).
        key = "layer_heads" if family == CONFIG_FORMAT else "num_hidden_layers"
        raise UserError(
            f"the weights in {folder} hold {len(held)} layers but config.json's {key} "
            f"gives {len(wanted)}; set {key} to match the weights, or copy the folder "
            "again if a weight file is missing."
        )
    wrong = [
        f"{k} (file {tuple(provided[k].shape)}, config {tuple(v.shape)}) "
        f"set by {shape_keys(k, family)}"
        for k, v in expected.items()
        if k in provided and provided[k].shape != v.shape
    ]
    not_float = [k for k in provided if k in expected and not provided[k].is_floating_point()]
    if not_float and not (wrong or missing or unexpected):
        raise UserError(
            f"the weights in {folder} hold integer tensors ({_list_keys(not_float)}), which "
            "is not supported: SlimPajama Studio reads float weights (a model quantized by "
            "another tool is not); use the unquantized model."
        )
    problems = mismatch_problems(wrong=wrong, missing=missing, unexpected=unexpected)
    if not_float:
        problems.append(f"{len(not_float)} not floating point: {_list_keys(not_float)}")
    if problems:
        raise UserError(
            f"the weights in {folder} do not match its config.json — "
            + "; ".join(problems)
            + ". config.json and the weights describe different models; fix those keys in "
            "config.json, or copy the folder again from its source."
        )


def load_pretrained(
    cls: type[EncoderClassifier],
    folder: str | Path,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
) -> EncoderClassifier:
    """Load a BERT or RoBERTa Hugging Face folder, or one saved by ``cls``.

    Only ``config.json`` (read and checked here, never executed) and safetensors
    weights are read. A missing or replaced classifier head is the one thing
    initialised at random; it is listed in ``model.load_report.new_keys`` and
    logged as a warning.

    Args:
        folder: the model folder.
        num_labels: classifier rows; a number different from the checkpoint's
            replaces its head. Default: the config's labels, else 2.
        id2label: label names by id; implies ``num_labels``.

    Raises:
        UserError: the folder, its config or its weights cannot be used safely
            or do not match; the message names the file, key or tensors.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; choose the folder that holds config.json.")
    try:
        return _load_pretrained(cls, folder, num_labels, id2label)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any bytes in a model file give a sentence
        # The backstop for a reader that does not yet refuse what it cannot use (E1).
        logger.exception("loading %s failed", folder)
        raise damaged_folder(folder, exc) from exc


def _load_pretrained(
    cls: type[EncoderClassifier],
    folder: Path,
    num_labels: int | None,
    id2label: dict[int, str] | None,
) -> EncoderClassifier:
    raw = read_config(folder)
    if "quantization" in raw:
        # Loading int8/int4 tensors as float would silently give a different model.
        method = (
            raw["quantization"].get("method", "?") if isinstance(raw["quantization"], dict) else "?"
        )
        raise UserError(
            f"{folder} holds a quantized model ({method}); open it with "
            "quantize.load_any(folder) or open_model(folder).load_model(), which keep it quantized."
        )
    family = raw.get("model_type")
    if family == CONFIG_FORMAT:
        config, mapped, ignored, translation = _slim_checkpoint(folder, raw)
    elif isinstance(family, str) and family in _FAMILIES:
        config, mapped, ignored, translation = _hf_checkpoint(folder, raw, _FAMILIES[family])
    elif family is None:
        raise UserError(
            f"{folder / 'config.json'} has no model_type, so the architecture is "
            f"unknown; supported: {', '.join(SUPPORTED_FAMILIES)}."
        )
    else:
        raise UserError(
            f"unsupported architecture {family!r} in {folder / 'config.json'}; "
            f"supported: {', '.join(SUPPORTED_FAMILIES)}."
        )

    # Decide the classifier: the caller's labels win; a checkpoint head that does
    # not fit them is set aside (reported), never reshaped. A head trained for other
    # named classes does not fit either, even with as many rows (its row i means
    # the class it was trained as id i; callers match names first, see inputs.py).
    trained_names = specific_label_names(config.id2label)
    if id2label is not None:
        if num_labels is not None and num_labels != len(id2label):
            raise UserError(f"num_labels={num_labels} but id2label names {len(id2label)} labels.")
        num_labels = len(id2label)
    if num_labels is not None and num_labels != config.num_labels:
        if id2label is None:
            id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        config.num_labels = num_labels
    if id2label is not None:
        config.id2label = dict(id2label)
    config.__post_init__()  # re-validate the label fields
    head = ("classifier.weight", "classifier.bias")
    user_labels = num_labels is not None
    if user_labels and "classifier.weight" in mapped:
        rows = mapped["classifier.weight"].shape[0]
        other_classes = (
            trained_names is not None
            and id2label is not None
            and sorted(n.strip().casefold() for n in trained_names)
            != sorted(str(n).strip().casefold() for n in id2label.values())
        )
        if rows != config.num_labels or other_classes:
            ignored += [k for k in head if k in mapped]
            for k in head:
                mapped.pop(k, None)

    if translation is not None and "classifier.weight" in mapped:
        refusal = head_refusal(translation, config.num_labels, str(folder / "config.json"))
        if refusal is not None:
            raise UserError(refusal)

    # The shapes config.json asks for are checked against the file's before any memory
    # is allocated: a config that names a vocabulary of 10^12 is refused, not attempted.
    with torch.device("meta"):
        expected = cls(config).state_dict()
    new_keys = [k for k in head if k not in mapped]
    _check_match(folder, expected, mapped, allowed_missing=set(head), family=str(family))
    model = cls(config)
    model.load_state_dict(mapped, strict=False)
    model.source_path = folder.resolve()
    model.load_report = LoadReport(
        source=folder, family=str(family), new_keys=new_keys, ignored_keys=sorted(ignored)
    )
    if new_keys:
        logger.warning(
            "The classifier head of %s is new (randomly initialised, %d labels); "
            "fine-tune the model before trusting its predictions.",
            folder,
            config.num_labels,
        )
    if ignored:
        logger.info("Unused tensors in %s: %s", folder, _list_keys(sorted(ignored)))
    return model.eval()


# ------------------------------------------------------------------ saving
