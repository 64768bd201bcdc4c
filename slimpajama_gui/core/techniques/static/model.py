"""The static-embedding classifier: one vector per token, mean-pooled, then a linear head.

A sentence costs a table lookup per token, a mean and one small matrix product, so it
runs in well under a millisecond at batch 1 on a CPU (no attention, no layers). The
vectors come from a sentence encoder (:mod:`.vectors`, Model2Vec's recipe); the head
and, by default, the vectors themselves are then trained on the task.

The saved folder is a normal variant folder: ``config.json`` (``model_type:
slimpajama``, zero layers, and a ``static_embeddings`` section), ``model.safetensors``
(never pickle) and the teacher's tokenizer. The table is stored as float32, float16 or
int8 with one scale per row (symmetric, ``row * scale`` gives the float row back).

Tensors in ``model.safetensors``:

* ``embeddings.word_embeddings.weight``: (V, D) float32, float16 or int8;
* ``embeddings.word_embeddings.scale``: (V,) float32, int8 storage only;
* ``classifier.weight`` (C, D) and ``classifier.bias`` (C,), float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.config import CONFIG_FORMAT, EncoderConfig
from slimpajama_gui.core.model.encoder import ClassifierOutput
from slimpajama_gui.core.model.inspection import STATIC_KEY

WEIGHTS_NAME = "model.safetensors"
Storage = Literal["float32", "float16", "int8"]
STORAGES: tuple[str, ...] = ("float32", "float16", "int8")
_TABLE = "embeddings.word_embeddings.weight"
_SCALE = "embeddings.word_embeddings.scale"


def is_static_config(config: dict[str, Any]) -> bool:
    """Whether a parsed ``config.json`` describes a static-embedding model."""
    return isinstance(config.get(STATIC_KEY), dict)


def is_static_folder(folder: Path | str) -> bool:
    """Whether ``folder`` holds a static-embedding model (read from its config.json only)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    from slimpajama_gui.core.model.checkpoints import read_config

    try:
        return is_static_config(read_config(Path(folder)))
    except UserError:
        return False


def quantize_rows(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row: ``(q (V, D) int8, scale (V,) float32)``.

    ``q * scale[:, None]`` approximates ``table`` within half a step (``scale / 2``) per
    entry; an all-zero row gets scale 1 (and stays zero).
    """
    table = table.detach().float()
    peak = table.abs().amax(dim=1)
    scale = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak))
    q = torch.round(table / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


class StaticEmbedding(nn.Module):
    """A (V, D) token-vector table, trainable in float32, stored smaller once trained.

    In float32 the table is the parameter ``weight``; after :meth:`store_as` ("float16"
    or "int8") it is a buffer of that dtype (plus per-row ``scale`` for int8), and a
    lookup returns float32 rows either way. Attributes ``num_embeddings`` and
    ``embedding_dim`` let parameter counting see the packed table as V x D parameters.
    """

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = (int(n) for n in table.shape)
        self.storage: str = "float32"
        self.weight = nn.Parameter(table.detach().float().clone())
        self.register_buffer("scale", None)  # (V,) float32 once stored as int8

    def store_as(self, storage: str) -> None:
        """Keep the table as ``storage`` ("float32", "float16", "int8"); float16 and int8
        freeze it (a buffer, no longer trained)."""
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, not {storage!r}")
        if storage == self.storage:
            return
        if self.storage != "float32":
            raise ValueError("a table is converted once, from float32")
        table = self.weight.detach()
        del self.weight
        if storage == "float16":
            self.register_buffer("weight", table.to(torch.float16))
        else:
            q, scale = quantize_rows(table)
            self.register_buffer("weight", q)
            self.scale = scale
        self.storage = storage

    def load_table(self, weight: torch.Tensor, scale: torch.Tensor | None) -> None:
        """Put saved tensors in place (dtype decides the storage)."""
        storage = {torch.float32: "float32", torch.float16: "float16", torch.int8: "int8"}.get(
            weight.dtype
        )
        if storage is None or (storage == "int8") != (scale is not None):
            raise UserError(
                f"the static embedding table is {weight.dtype} "
                f"{'with' if scale is not None else 'without'} a scale; expected float32, "
                "float16, or int8 with a per-row scale. Save the model again."
            )
        del self.weight
        if storage == "float32":
            self.weight = nn.Parameter(weight.float(), requires_grad=False)
        else:
            self.register_buffer("weight", weight)
            if scale is not None:
                self.scale = scale.float()
        self.storage = storage

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, D) float32 rows."""
        flat = ids.reshape(-1)
        rows = self.weight.index_select(0, flat)
        if self.storage == "int8":
            rows = rows.float() * self.scale.index_select(0, flat)[:, None]
        elif self.storage == "float16":
            rows = rows.float()
        return rows.view(*ids.shape, self.embedding_dim)


class StaticClassifier(nn.Module):
    """Token vectors → masked mean → linear head; the ``model(...).logits`` call of an
    :class:`~slimpajama_gui.core.model.encoder.EncoderClassifier`.

    Args:
        config: an :class:`EncoderConfig` with no layers: ``hidden_size`` is the vector
            width D, ``vocab_size`` the rows V, ``num_labels`` and ``id2label`` the head;
            ``max_position_embeddings`` only bounds how much text is read (the tokenizer
            cuts there, as it did for the teacher).
        table: (V, D) float token vectors.
        static: the ``static_embeddings`` settings (``skip_token_ids``: ids left out of
            the mean, the tokenizer's [CLS]/[SEP]/pad, as Model2Vec leaves them out).

    Attributes:
        source_path: the folder it was loaded from, or None.
    """

    def __init__(self, config: EncoderConfig, table: torch.Tensor, static: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.static = dict(static)
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = StaticEmbedding(table)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)
        skip = [int(i) for i in self.static.get("skip_token_ids", [])]
        self.register_buffer("skip_ids", torch.tensor(skip, dtype=torch.long), persistent=False)
        self.source_path: Path | None = None

    @property
    def storage(self) -> str:
        return self.embeddings.word_embeddings.storage

    def store_as(self, storage: str) -> None:
        """Keep the vectors as ``storage`` from now on (see :meth:`StaticEmbedding.store_as`)."""
        self.embeddings.word_embeddings.store_as(storage)
        self.static["storage"] = storage

    def pooled(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T) ids -> (B, D): the mean of the real, non-special tokens' vectors."""
        keep = (
            torch.ones_like(input_ids, dtype=torch.bool)
            if attention_mask is None
            else attention_mask.bool()
        )
        if self.skip_ids.numel():
            keep = keep & ~torch.isin(input_ids, self.skip_ids)
        vectors = self.embeddings.word_embeddings(input_ids)  # (B, T, D)
        weight = keep.unsqueeze(-1).to(vectors.dtype)
        return (vectors * weight).sum(1) / weight.sum(1).clamp_min(1.0)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **_: object,
    ) -> ClassifierOutput:
        """Classify (B, T) token ids; returns logits (B, C). Segment ids are not read."""
        pooled = self.pooled(input_ids, attention_mask)
        logits = self.classifier(pooled)
        return ClassifierOutput(logits=logits, last_hidden_state=pooled[:, None, :],
                                pooled_output=pooled)  # fmt: skip

    # ------------------------------------------------------------------ files

    def config_dict(self) -> dict[str, Any]:
        """What ``config.json`` holds: the layer-less EncoderConfig plus the static section."""
        return {"model_type": CONFIG_FORMAT, **self.config.to_dict(), STATIC_KEY: self.static}

    def write_files(self, folder: str | Path) -> None:
        """Write ``model.safetensors`` and ``config.json`` into an existing folder (a
        variant's staging folder; the caller makes it atomic).

        Raises:
            UserError: a weight holds inf or NaN.
        """
        import json

        from safetensors.torch import save_file

        from slimpajama_gui.core.model.saving import check_finite
        from slimpajama_gui.core.storage.atomic import atomic_write_text

        check_finite(self)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(Path(folder) / WEIGHTS_NAME), metadata={"format": "pt"})
        atomic_write_text(Path(folder) / "config.json", json.dumps(self.config_dict(), indent=2))

    @classmethod
    def from_folder(cls, folder: str | Path) -> StaticClassifier:
        """Load a folder written by :meth:`write_files` (safetensors only, header checked).

        Raises:
            UserError: the config or the weights do not describe a static model, or do
                not match each other.
        """
        from slimpajama_gui.core.model.checkpoints import read_config
        from slimpajama_gui.core.storage.safe_io import load_safetensors

        folder = Path(folder)
        raw = dict(read_config(folder))
        static = raw.pop(STATIC_KEY, None)
        if not isinstance(static, dict):
            raise UserError(f"config.json in {folder} has no {STATIC_KEY} section.")
        try:
            config = EncoderConfig.from_dict(raw)
        except UserError as exc:
            raise UserError(f"{folder / 'config.json'}: {exc}") from exc
        tensors = load_safetensors(folder / WEIGHTS_NAME)
        table = tensors.get(_TABLE)
        head_w, head_b = tensors.get("classifier.weight"), tensors.get("classifier.bias")
        expected = (config.vocab_size, config.hidden_size)
        if table is None or head_w is None or head_b is None or tuple(table.shape) != expected:
            raise UserError(
                f"{folder / WEIGHTS_NAME} does not hold a static model of {expected[0]} x "
                f"{expected[1]} vectors and a {config.num_labels}-class head as config.json "
                "says; save the model again."
            )
        if tuple(head_w.shape) != (config.num_labels, config.hidden_size):
            raise UserError(
                f"{folder / WEIGHTS_NAME}: classifier.weight is {tuple(head_w.shape)}, not "
                f"({config.num_labels}, {config.hidden_size}); save the model again."
            )
        model = cls(config, torch.zeros(1, config.hidden_size), static)
        emb = model.embeddings.word_embeddings
        emb.num_embeddings = config.vocab_size
        emb.load_table(table, tensors.get(_SCALE))
        with torch.no_grad():
            model.classifier.weight.copy_(head_w.float())
            model.classifier.bias.copy_(head_b.float())
        model.source_path = folder.resolve()
        return model.eval()
