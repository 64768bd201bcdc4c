"""Writing model folders: our own format, and one plain ``transformers`` loads.

:func:`save_pretrained` writes ``model.safetensors`` + ``config.json`` (``model_type:
slimpajama``, which keeps each layer's own width); :func:`export_transformers` writes a
``BertForSequenceClassification`` / ``RobertaForSequenceClassification`` folder with
identical logits. Both stage the folder and swap it in complete, and both refuse to
write over the folder a model was loaded from (:func:`check_target`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.checkpoints import _TO_HF, WEIGHTS_NAME, _rename
from slimpajama_gui.core.model.config import CONFIG_FORMAT, EncoderConfig
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.model.tokenizers import fix_saved_padding
from slimpajama_gui.core.storage.atomic import atomic_dir, atomic_write_text, same_or_inside
from slimpajama_gui.core.storage.safe_io import copy_model_files

logger = logging.getLogger(__name__)

#: Files :func:`copy_tokenizer_files` carries from a source model to a result.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "merges.txt",
    "vocab.json",
    "added_tokens.json",
)


def save_pretrained(
    model: EncoderClassifier, folder: str | Path, tokenizer_from: str | Path | None = None
) -> Path:
    """Write ``model.safetensors`` + ``config.json`` atomically into ``folder``.

    The folder is staged beside its final place and swapped in complete, so a
    crash leaves the old folder or the new one, never half of either.

    Args:
        folder: the output folder; an existing model folder there is replaced.
        tokenizer_from: also copy tokenizer files from this folder.

    Returns:
        The absolute output folder.

    Raises:
        UserError: ``folder`` is (or contains) the folder this model was loaded
            from, or is an existing folder that is not a model folder, or the weights
            hold inf/NaN (:func:`check_finite`).
    """
    target = check_target(model, folder)
    with atomic_dir(target) as staging:
        write_files(model, staging)
        if tokenizer_from is not None:
            copy_tokenizer_files(tokenizer_from, staging)
    return target


def write_files(model: EncoderClassifier, folder: str | Path) -> None:
    """Write our weights and config into an existing folder, not atomically.

    For callers that stage a larger folder themselves (e.g. a result with its
    report) inside one :func:`atomic_dir`; everyone else wants
    :func:`save_pretrained`.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    check_finite(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    config = {"model_type": CONFIG_FORMAT, **model.config.to_dict()}
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")


def export_transformers(
    model: EncoderClassifier, folder: str | Path, tokenizer_from: str | Path | None = None
) -> Path:
    """Write a folder that plain ``transformers`` loads with identical logits.

    BERT-positioned models become ``BertForSequenceClassification``, RoBERTa-
    positioned ones ``RobertaForSequenceClassification`` (its head is our pooler
    + classifier). Written atomically, like :func:`save_pretrained`.

    transformers (5.x) gives every layer ``hidden_size / head_dim`` heads and one
    FFN width, and no longer reads ``pruned_heads``. A structured-pruned layer is
    therefore written back at full width with zero rows and columns in place of
    its removed heads and neurons: they contribute exactly nothing, so the logits
    are the same, but the file is as large as the unpruned model's (our own format,
    :func:`save_pretrained`, keeps it small).

    Raises:
        UserError: the model cannot be expressed in that class (a layer wider than
            ``hidden_size``, ``hidden_size`` not a multiple of ``head_dim``, no
            pooler), or the folder is refused as in :func:`save_pretrained`.
    """
    cfg = model.config
    target = check_target(model, folder)
    check_finite(model)
    heads = cfg.hidden_size // cfg.head_dim
    if heads * cfg.head_dim != cfg.hidden_size or max(cfg.layer_heads, default=0) > heads:
        raise UserError(
            f"this model has heads of width {cfg.head_dim} ({cfg.layer_heads} per layer), "
            f"but Hugging Face BERT needs heads x head width = hidden size "
            f"({cfg.hidden_size}); save in the SlimPajama format instead."
        )
    ffn = max(cfg.layer_ffn, default=0)
    if model.pooler is None:
        raise UserError(
            "this model has no pooler, and Hugging Face's sequence classifiers always "
            "apply one; save in the SlimPajama format instead."
        )
    roberta = cfg.position_offset > 0
    if roberta and cfg.position_offset != cfg.pad_token_id + 1:
        raise UserError(
            f"position_offset {cfg.position_offset} is neither 0 (BERT) nor "
            f"pad_token_id + 1 (RoBERTa); no Hugging Face class positions tokens so."
        )
    family = "roberta" if roberta else "bert"

    state: dict[str, torch.Tensor] = {}
    padded = _pad_layers(model.state_dict(), cfg, heads * cfg.head_dim, ffn)
    for name, tensor in padded.items():
        state[_export_name(name, family)] = tensor.detach().cpu().contiguous()
    if any(h != heads for h in cfg.layer_heads) or any(f != ffn for f in cfg.layer_ffn):
        logger.warning(
            "Exported %s with its pruned heads and neurons as zeros (%d heads, FFN %d "
            "in every layer): transformers has one width for all layers.",
            target,
            heads,
            ffn,
        )
    if cfg.type_vocab_size == 0:
        # Hugging Face always adds a token-type row; a zero row adds nothing.
        ref = model.embeddings.word_embeddings.weight
        state[f"{family}.embeddings.token_type_embeddings.weight"] = torch.zeros(
            1, cfg.hidden_size, dtype=ref.dtype
        )
    label2id = {label: i for i, label in cfg.id2label.items()}
    hf_config = {
        "architectures": [
            "RobertaForSequenceClassification" if roberta else "BertForSequenceClassification"
        ],
        "model_type": family,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "hidden_act": cfg.hidden_act,
        "hidden_dropout_prob": cfg.hidden_dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "classifier_dropout": cfg.classifier_dropout,
        "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": max(cfg.type_vocab_size, 1),
        "initializer_range": 0.02,
        "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": cfg.pad_token_id,
        "position_embedding_type": "absolute",
        "id2label": {str(i): label for i, label in sorted(cfg.id2label.items())},
        "label2id": label2id,
    }
    from safetensors.torch import save_file

    with atomic_dir(target) as staging:
        save_file(state, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        atomic_write_text(staging / "config.json", json.dumps(hf_config, indent=2) + "\n")
        if tokenizer_from is not None:
            copy_tokenizer_files(tokenizer_from, staging)
    return target


def non_finite_tensors(model: torch.nn.Module) -> list[str]:
    """Names of ``model``'s floating tensors (parameters, buffers) holding inf or NaN."""
    # A dynamically quantized model's state dict also holds non-tensors (the packed
    # weights' dtype, whose ``is_floating_point`` is a bool attribute, not a method).
    return [
        name
        for name, t in model.state_dict().items()
        if isinstance(t, torch.Tensor)
        and t.is_floating_point()
        and not bool(torch.isfinite(t).all())
    ]


def check_finite(model: torch.nn.Module) -> None:
    """Refuse to save weights that hold inf or NaN (a diverged training, X1).

    Raises:
        UserError: naming the first tensors that are not finite.
    """
    bad = non_finite_tensors(model)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise UserError(
            f"the model's weights contain inf/NaN ({shown}), so it was not saved: its "
            "training diverged. Lower the learning rate and run the job again."
        )


def check_target(model: EncoderClassifier, folder: str | Path) -> Path:
    """The absolute folder to write ``model`` to; UserError for one it must not replace."""
    target = Path(folder).expanduser().resolve()
    src = model.source_path
    if src is not None and same_or_inside(src, target):  # links, "..", case: as on disk
        raise UserError(
            f"refusing to write into {target}: it is (or holds) the folder this model "
            f"was loaded from ({src}), and a source model is never overwritten. "
            "Choose another output folder."
        )
    if target.exists() and not target.is_dir():
        raise UserError(f"cannot save to {target}: it is a file; choose a folder.")
    # The folder is replaced as a whole, so refuse one that holds something else
    # (a home folder picked by mistake) rather than delete it.
    if target.is_dir() and any(target.iterdir()) and not (target / "config.json").is_file():
        raise UserError(
            f"{target} already holds files and is not a model folder; saving would "
            "replace it. Choose a new or empty folder."
        )
    return target


def _pad_layers(
    state: dict[str, torch.Tensor], cfg: EncoderConfig, attention_width: int, ffn: int
) -> dict[str, torch.Tensor]:
    """``state`` with every layer widened to ``attention_width`` / ``ffn`` by zeros.

    A zero query/key/value row gives a head whose value is 0, and a zero column of the
    output projection drops it; a zero FFN output column drops that neuron whatever
    its activation gives. So the padded layers compute exactly what the narrow ones do.
    """
    out = dict(state)
    for i in range(cfg.num_layers):
        rows = {
            f"layers.{i}.attention.{p}.{t}": attention_width
            for p in ("query", "key", "value")
            for t in ("weight", "bias")
        }
        rows[f"layers.{i}.ffn.intermediate.weight"] = ffn
        rows[f"layers.{i}.ffn.intermediate.bias"] = ffn
        for name, width in rows.items():
            t = out[name]
            out[name] = torch.cat([t, t.new_zeros(width - t.shape[0], *t.shape[1:])])
        for name, width in (
            (f"layers.{i}.attention.output.weight", attention_width),
            (f"layers.{i}.ffn.output.weight", ffn),
        ):
            t = out[name]
            out[name] = torch.cat([t, t.new_zeros(t.shape[0], width - t.shape[1])], dim=1)
    return out


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> list[str]:
    """Copy the tokenizer files present in ``src`` into ``dst``: regular files inside
    ``src`` only, never what a link points to elsewhere (P1). A fixed-length padding in
    ``tokenizer.json`` becomes batch-longest (:func:`.tokenizers.fix_saved_padding`).

    Returns:
        The names of the files copied (possibly none).

    Raises:
        UserError: a tokenizer file in ``src`` is a symbolic link that leaves it.
    """
    copied = copy_model_files(Path(src), Path(dst), TOKENIZER_FILES)
    if "tokenizer.json" in copied:
        fix_saved_padding(Path(dst))
    return copied


def _export_name(name: str, family: str) -> str:
    if family == "roberta" and name.startswith(("pooler.", "classifier.")):
        # RobertaClassificationHead = dense + tanh + out_proj on <s>: our pooler + classifier.
        part = "dense" if name.startswith("pooler.") else "out_proj"
        return f"classifier.{part}.{name.rsplit('.', 1)[1]}"
    if name.startswith("classifier."):
        return name
    hf = _rename(name, _TO_HF)
    if hf is None:  # every parameter is in NAME_TABLE; this is a bug, not a user error
        raise RuntimeError(f"no Hugging Face name for parameter {name}")
    return f"{family}.{hf}"
