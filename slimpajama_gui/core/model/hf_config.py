"""Read a Hugging Face BERT / RoBERTa ``config.json``, key by key, as transformers does.

Every key that transformers' ``BertConfig`` / ``RobertaConfig`` accept either changes
nothing in a classifier's logits (and is ignored here, as transformers ignores it in
``BertForSequenceClassification``), is translated into :class:`EncoderConfig` fields (so the
logits equal transformers' within 1e-5), or is refused with one sentence that names the
key, its value and that it is not supported. ``docs/config-support.md`` lists every key
with what transformers does and what happens here; keep the two in step.

This module reads JSON only: no torch, no weights. The model browser
(:func:`models.inspect_model`) and the loader (:meth:`EncoderClassifier.from_pretrained`)
both call :func:`translate`, so ``slimpajama info`` shows the same per-layer heads the
loader builds and refuses the same configs with the same sentences.

Example:
    >>> raw = {"model_type": "bert", "hidden_size": 32, "num_attention_heads": 4,
    ...        "num_hidden_layers": 2, "pruned_heads": {"0": [1, 3]}}
    >>> translate(raw, "bert", "m/config.json").fields["layer_heads"]
    [2, 4]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage.safe_io import short_repr

# Here, not in model/config.py, because this module must import without torch (the
# wizard's plan reads configs on the GUI thread).
#: Most classes a classifier may have; more is a damaged config, not a task we train.
MAX_LABELS = 100_000
#: Most encoder layers a config may name (the largest encoders have under 100).
MAX_LAYERS = 1_000

__all__ = [
    "ACTIVATION_NAMES",
    "DEFAULTS",
    "FAMILIES",
    "HFFamily",
    "Translation",
    "head_refusal",
    "shape_keys",
    "translate",
]

#: ``hidden_act`` values we compute exactly as transformers' ``ACT2FN`` (the functions
#: are ``transformer.ACTIVATIONS``; a test keeps the two lists equal).
ACTIVATION_NAMES = (
    "gelu",
    "gelu_python",
    "gelu_new",
    "gelu_pytorch_tanh",
    "gelu_python_tanh",
    "gelu_fast",
    "gelu_accurate",
    "gelu_10",
    "quick_gelu",
    "relu",
    "relu2",
    "relu6",
    "leaky_relu",
    "silu",
    "swish",
    "mish",
    "sigmoid",
    "tanh",
    "linear",
    "hardswish",
    "sqrtsoftplus",
    "laplace",
)

#: Activations transformers gives learned parameters of their own; no BERT checkpoint
#: holds them under a name we map, so their values would be random.
_LEARNED_ACTIVATIONS = ("prelu", "xielu")

#: transformers' defaults for a key a config.json leaves out (BertConfig / RobertaConfig).
DEFAULTS: dict[str, dict[str, Any]] = {
    "bert": {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "classifier_dropout": None,
    },
}
DEFAULTS["roberta"] = {**DEFAULTS["bert"], "vocab_size": 50265, "pad_token_id": 1}

#: The problem types of transformers' sequence classifiers; only the first is ours.
_PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


@dataclass(frozen=True)
class HFFamily:
    """What a family's config.json may say.

    Attributes:
        name: ``model_type``.
        architectures: transformers classes whose checkpoints hold this family's
            encoder (the task head is used only from ``...ForSequenceClassification``).
        positions_from_pad: RoBERTa counts positions from ``pad_token_id + 1``.
    """

    name: str
    architectures: frozenset[str]
    positions_from_pad: bool


_TASKS = (
    "Model",
    "ForSequenceClassification",
    "ForMaskedLM",
    "ForTokenClassification",
    "ForQuestionAnswering",
    "ForMultipleChoice",
)
FAMILIES: dict[str, HFFamily] = {
    "bert": HFFamily(
        "bert",
        frozenset(
            [f"Bert{t}" for t in _TASKS]
            + ["BertForPreTraining", "BertForNextSentencePrediction", "BertLMHeadModel"]
        ),
        positions_from_pad=False,
    ),
    "roberta": HFFamily(
        "roberta",
        frozenset([f"Roberta{t}" for t in _TASKS] + ["RobertaForCausalLM"]),
        positions_from_pad=True,
    ),
}


@dataclass(frozen=True)
class Translation:
    """A config.json read as transformers reads it.

    Attributes:
        fields: keyword arguments of ``EncoderConfig`` (``has_pooler`` and a missing
            ``num_labels`` are settled later from the weights).
        num_labels_given: config.json names its labels (``id2label`` or ``num_labels``).
        problem_type: ``problem_type`` as written, or None.
    """

    fields: dict[str, Any]
    num_labels_given: bool
    problem_type: str | None


def _refuse(where: str, text: str) -> UserError:
    return UserError(f"{where}: {text}")


def _int(raw: dict, family: str, key: str, where: str, minimum: int) -> int:
    value = raw.get(key, DEFAULTS[family][key])
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _refuse(where, f"{key} must be a whole number >= {minimum}, not {value!r}.")
    return value


def _probability(raw: dict, family: str, key: str, where: str, allow_none: bool = False) -> Any:
    value = raw.get(key, DEFAULTS[family][key])
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise _refuse(
            where,
            f"{key} {value!r} is not supported; a dropout probability here must be a "
            "number in [0, 1) (1 would drop every activation in training).",
        )
    return float(value)


def _refuse_unsupported(raw: dict, family: str, where: str) -> None:
    """Refuse the keys and values whose model we do not compute (one sentence each)."""
    for key in ("is_decoder", "add_cross_attention"):
        if raw.get(key):
            raise _refuse(
                where,
                f"{key} is true, which is not supported: SlimPajama Studio compresses "
                "encoders (text classifiers), not decoders.",
            )
    pos = raw.get("position_embedding_type")
    if pos not in (None, "absolute"):
        raise _refuse(
            where,
            f"position_embedding_type {pos!r} (relative position attention) is not "
            'supported; only "absolute".',
        )
    if raw.get("per_layer_config"):
        raise _refuse(
            where,
            "per_layer_config (per-layer settings) is not supported for "
            f"{family}: BERT and RoBERTa have one setting for all layers (pruned heads are "
            "read from pruned_heads).",
        )
    quant = raw.get("quantization_config")
    if quant:
        method = quant.get("quant_method", "?") if isinstance(quant, dict) else quant
        raise _refuse(
            where,
            f"quantization_config ({method}) is not supported: SlimPajama Studio reads "
            "float weights; use the unquantized model (the app quantizes it itself).",
        )
    act = raw.get("hidden_act", DEFAULTS[family]["hidden_act"])
    if act in _LEARNED_ACTIVATIONS:
        raise _refuse(
            where,
            f"hidden_act {act!r} is not supported: it has learned parameters of its own.",
        )
    if not isinstance(act, str) or act not in ACTIVATION_NAMES:
        raise _refuse(
            where,
            f"hidden_act {act!r} is not supported; supported: {', '.join(ACTIVATION_NAMES)}.",
        )
    if raw.get("type_vocab_size", 2) == 0:
        raise _refuse(
            where,
            "type_vocab_size 0 is not supported: BERT and RoBERTa look up token type 0 "
            "for every token (transformers cannot run this model either); choose a "
            "checkpoint with type_vocab_size 1 or more.",
        )


def _architectures(raw: dict, family: HFFamily, where: str) -> list[str]:
    archs = raw.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise _refuse(where, f"architectures must be a list of class names, not {archs!r}.")
    unknown = [a for a in archs if a not in family.architectures]
    if unknown:
        raise _refuse(
            where,
            f"architectures names {', '.join(unknown)}, which is not supported (not a "
            f"{family.name} class SlimPajama Studio reads); supported: "
            f"{', '.join(sorted(family.architectures))}.",
        )
    return archs


def _pruned_heads(raw: dict, layers: int, heads: int, where: str) -> dict[int, set[int]]:
    """``pruned_heads`` as transformers 4.x applied it: layer -> heads removed.

    Head numbers are the original ones (0..num_attention_heads-1); the heads left keep
    their order, so the weights' rows are simply the remaining heads, first to last.
    """
    value = raw.get("pruned_heads") or {}
    bad = _refuse(
        where,
        "pruned_heads must map layer numbers to lists of head numbers, like "
        f'{{"0": [1, 3]}}, not {short_repr(value)}.',
    )
    if not isinstance(value, dict):
        raise bad
    pruned: dict[int, set[int]] = {}
    for key, removed in value.items():
        try:
            layer = int(key)
        except (TypeError, ValueError):
            raise bad from None
        if not isinstance(removed, list) or not all(
            isinstance(h, int) and not isinstance(h, bool) for h in removed
        ):
            raise bad
        if not 0 <= layer < layers:
            raise _refuse(
                where,
                f"pruned_heads names layer {key}, which does not exist: layers must be "
                f"0..{layers - 1} (num_hidden_layers {layers}).",
            )
        if layer in pruned:
            raise _refuse(where, f"pruned_heads names layer {layer} twice.")
        outside = sorted(h for h in removed if not 0 <= h < heads)
        if outside:
            raise _refuse(
                where,
                f"pruned_heads removes head {outside[0]} of layer {layer}, which does not "
                f"exist: heads must be 0..{heads - 1} (num_attention_heads {heads}).",
            )
        pruned[layer] = set(removed)
    return pruned


def _labels(raw: dict, where: str) -> tuple[dict, int | None]:
    id2label = raw.get("id2label") or {}
    if not isinstance(id2label, dict):
        raise _refuse(where, "id2label must be an object mapping label ids to names.")
    num_labels = raw.get("num_labels")
    if num_labels is not None and (
        isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1
    ):
        raise _refuse(where, f"num_labels must be a whole number >= 1, not {num_labels!r}.")
    count = len(id2label) or num_labels or 0
    if count > MAX_LABELS:
        raise _refuse(
            where,
            f"{'id2label names' if id2label else 'num_labels is'} {count:,} labels; "
            f"SlimPajama Studio trains classifiers of at most {MAX_LABELS:,} classes. "
            "Check num_labels and id2label.",
        )
    if id2label and num_labels is not None and num_labels != len(id2label):
        raise _refuse(
            where,
            f"num_labels is {num_labels} but id2label names {len(id2label)} labels; "
            "they must agree.",
        )
    try:
        ids = sorted(int(k) for k in id2label)
    except (TypeError, ValueError):
        ids = None
    if ids is not None and ids != list(range(len(ids))):
        raise _refuse(
            where,
            f"id2label has ids {short_repr(ids)}; it must number the labels 0..{len(ids) - 1}, one per "
            "row of the classifier.",
        )
    if ids is None:
        raise _refuse(where, "id2label must map label numbers (0, 1, ...) to names.")
    return id2label, (len(id2label) or num_labels)


def translate(raw: dict[str, Any], family: str, where: str) -> Translation:
    """Translate a BERT / RoBERTa config.json into ``EncoderConfig`` fields.

    Args:
        raw: the parsed config.json (already checked for remote code).
        family: its ``model_type``, a key of :data:`FAMILIES`.
        where: how messages name the file, e.g. ``"/models/bert/config.json"``.

    Returns:
        The fields, with per-layer ``layer_heads`` after ``pruned_heads``.

    Raises:
        UserError: a key has a value transformers would not load, or one whose model
            SlimPajama Studio does not compute; the sentence names the key.
    """
    fam = FAMILIES[family]
    _refuse_unsupported(raw, family, where)
    _architectures(raw, fam, where)
    layers = _int(raw, family, "num_hidden_layers", where, 0)
    if layers > MAX_LAYERS:
        raise _refuse(
            where, f"num_hidden_layers is {layers:,}; at most {MAX_LAYERS:,} are supported."
        )
    heads = _int(raw, family, "num_attention_heads", where, 1)
    hidden = _int(raw, family, "hidden_size", where, 1)
    if hidden % heads:
        raise _refuse(
            where, f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}."
        )
    pruned = _pruned_heads(raw, layers, heads, where)
    pad = raw.get("pad_token_id", DEFAULTS[family]["pad_token_id"])
    if pad is None and fam.positions_from_pad:
        raise _refuse(
            where,
            "pad_token_id is null, which is not supported: RoBERTa numbers positions "
            "from pad_token_id + 1.",
        )
    if pad is None:  # BERT: no padding row; the id only freezes that row in training
        pad = DEFAULTS[family]["pad_token_id"]
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise _refuse(where, f"pad_token_id must be a whole number >= 0, not {pad!r}.")
    max_positions = _int(raw, family, "max_position_embeddings", where, 1)
    offset = pad + 1 if fam.positions_from_pad else 0
    if offset >= max_positions:
        raise _refuse(
            where,
            f"pad_token_id {pad} leaves no positions: RoBERTa positions start at "
            f"pad_token_id + 1, and max_position_embeddings is {max_positions}.",
        )
    eps = raw.get("layer_norm_eps", DEFAULTS[family]["layer_norm_eps"])
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise _refuse(where, f"layer_norm_eps must be a positive number, not {eps!r}.")
    id2label, num_labels = _labels(raw, where)
    problem = raw.get("problem_type")
    fields = {
        "vocab_size": _int(raw, family, "vocab_size", where, 1),
        "hidden_size": hidden,
        "layer_heads": [heads - len(pruned.get(i, ())) for i in range(layers)],
        "head_dim": hidden // heads,
        "layer_ffn": [_int(raw, family, "intermediate_size", where, 0)] * layers,
        "max_position_embeddings": max_positions,
        "type_vocab_size": _int(raw, family, "type_vocab_size", where, 1),
        "layer_norm_eps": float(eps),
        "hidden_act": raw.get("hidden_act", DEFAULTS[family]["hidden_act"]),
        "hidden_dropout": _probability(raw, family, "hidden_dropout_prob", where),
        "attention_dropout": _probability(raw, family, "attention_probs_dropout_prob", where),
        "classifier_dropout": _probability(
            raw, family, "classifier_dropout", where, allow_none=True
        ),
        "num_labels": num_labels or 2,
        "id2label": id2label,
        "pad_token_id": pad,
        "position_offset": offset,
        "source_family": family,
    }
    return Translation(fields, num_labels is not None, problem)


def specific_label_names(id2label: Any) -> list[str] | None:
    """A head's class names in id order, or None when they say nothing (absent, or
    transformers' placeholders LABEL_0, LABEL_1, ...)."""
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return None
    if all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


def head_refusal(translation: Translation, num_labels: int, where: str) -> str | None:
    """Why a checkpoint's classifier head cannot be used as ours, or None if it can.

    SlimPajama Studio trains and evaluates single-label classifiers (softmax over
    classes); transformers reads ``num_labels`` 1 without a ``problem_type`` as
    regression. Asked only when the checkpoint's head is kept.
    """
    problem = translation.problem_type
    if problem not in (None, "single_label_classification"):
        kind = "is not supported" if problem in _PROBLEM_TYPES else "is not a problem type"
        return (
            f"{where}: problem_type {problem!r} {kind}; SlimPajama Studio trains and "
            "evaluates single-label classifiers (one class per text). Start the job with a "
            "finetune step on single-label data, which gives the model a new head."
        )
    if num_labels == 1:
        return (
            f"{where}: a classifier with num_labels 1 is a regression model in "
            "transformers, which is not supported; SlimPajama Studio trains and evaluates "
            "single-label classifiers with 2 or more classes. Start the job with a finetune "
            "step on data with 2 or more classes, which gives the model a new head."
        )
    return None


#: Which config.json keys set the shape of each of our parameters (for messages).
_SHAPE_KEYS = (
    ("embeddings.word_embeddings.", "vocab_size", "vocab_size"),
    ("embeddings.position_embeddings.", "max_position_embeddings", "max_position_embeddings"),
    ("embeddings.token_type_embeddings.", "type_vocab_size", "type_vocab_size"),
    (".attention.output.", "num_attention_heads, pruned_heads", "layer_heads, head_dim"),
    (".attention.", "num_attention_heads, pruned_heads", "layer_heads, head_dim"),
    (".ffn.", "intermediate_size", "layer_ffn"),
    ("classifier.", "id2label, num_labels", "id2label, num_labels"),
)


def shape_keys(name: str, family: str) -> str:
    """The config.json keys that decide the shape of our parameter ``name``."""
    column = 2 if family == "slimpajama" else 1
    for row in _SHAPE_KEYS:
        if row[0] in name or name.startswith(row[0]):
            return f"{row[column]}, hidden_size"
    return "hidden_size"
