"""Sensitivity analysis: what removing or int8-quantizing each part of a model costs.

:func:`measure_sensitivity` runs the unchanged model once on a sample of eval batches,
then once per ablation, and compares:

- **layer** ``i``: the encoder layer dropped (as ``prune`` with ``method: layers`` would);
- **head** ``(i, h)``: attention head ``h`` of layer ``i`` removed, by zeroing its slice
  of the input of the layer's output projection with the structured pruner's masks
  (:func:`~slimpajama_gui.core.techniques.prune.structured.masked_structure`: the
  logits ``prune_structure`` would give, without building the smaller model);
- **ffn** ``i``: every neuron of the layer's feed-forward block masked the same way
  (its output is the output projection's bias alone, as an FFN pruned to width 0);
- **linear** ``name``: that one ``nn.Linear`` quantized to dynamic int8 with the app's
  own int8 code (:func:`~slimpajama_gui.core.techniques.quantize.methods.quantize_model`),
  every other module left in float.

Each measurement is an :class:`Effect`: the change of the mean cross-entropy loss and
of the accuracy against the unchanged model on the same rows, and the mean KL
divergence of the unchanged model's class probabilities to the changed one's (it sees
damage before a prediction flips). A :class:`SensitivityReport` holds them all, answers
the questions the compression steps ask (:meth:`~SensitivityReport.layers_to_keep`,
:meth:`~SensitivityReport.heads_to_remove`, :meth:`~SensitivityReport.linears_to_keep_float`,
:meth:`~SensitivityReport.linear_costs`) and is saved as ``sensitivity.json``
(:meth:`~SensitivityReport.save`, :func:`load_report`).

Ablations are applied with hooks and a swapped layer list, removed or restored on exit:
the model is never copied except for a linear's int8 copy, and is as it was afterwards.

Example:
    >>> report = measure_sensitivity(model, batches)           # doctest: +SKIP
    >>> report.layers_to_keep(3)
    [0, 2, 5]
    >>> report.heads_to_remove(0.25)
    {0: [3, 7], 1: [0], ...}
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage.atomic import atomic_write_text
from slimpajama_gui.core.storage.safe_io import read_json

#: File name of a saved report, beside ``slimpajama.json`` or in the step's folder.
REPORT_FILE = "sensitivity.json"
#: Marks a file this app wrote (and may replace).
REPORT_FORMAT = "slimpajama-sensitivity"
REPORT_VERSION = 1

Kind = Literal["layer", "head", "ffn", "linear"]
#: How a cost is scored: loss increase, accuracy lost, or KL divergence.
Measure = Literal["loss", "accuracy", "kl"]
KINDS: tuple[Kind, ...] = ("layer", "head", "ffn", "linear")


@dataclass(frozen=True)
class Effect:
    """What one ablation did on the sample, against the unchanged model.

    Attributes:
        loss_change: mean cross-entropy (nats per row) after minus before; > 0 is worse.
        accuracy_change: accuracy (fraction 0..1) after minus before; < 0 is worse.
        kl: mean KL(p_unchanged || p_changed) over rows, in nats; >= 0.
    """

    loss_change: float
    accuracy_change: float
    kl: float

    def cost(self, measure: Measure = "loss") -> float:
        """How much worse the model got, larger = more sensitive, in ``measure``'s unit."""
        if measure == "loss":
            return self.loss_change
        if measure == "accuracy":
            return -self.accuracy_change
        if measure == "kl":
            return self.kl
        raise ValueError(f"measure must be loss, accuracy or kl, not {measure!r}")

    def to_dict(self) -> dict[str, float]:
        return {
            "loss_change": self.loss_change,
            "accuracy_change": self.accuracy_change,
            "kl": self.kl,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Effect:
        return cls(float(data["loss_change"]), float(data["accuracy_change"]), float(data["kl"]))


@dataclass(frozen=True)
class Measurement:
    """One finished measurement, as progress events carry it.

    ``key`` is the layer (``int``), ``(layer, head)`` or the linear's module name.
    """

    kind: Kind
    key: Any
    effect: Effect
    done: int
    total: int

    def to_event(self) -> dict[str, Any]:
        """Plain values for a progress event: kind, layer, head, name, the effect, done/total."""
        out: dict[str, Any] = {"kind": self.kind, "done": self.done, "total": self.total}
        if self.kind == "head":
            out["layer"], out["head"] = int(self.key[0]), int(self.key[1])
        elif self.kind in ("layer", "ffn"):
            out["layer"] = int(self.key)
        else:
            out["name"] = str(self.key)
        out.update(self.effect.to_dict())
        return out


@dataclass
class SensitivityReport:
    """Every measured effect of one model on one sample; what compression steps ask.

    Attributes:
        split: the dataset split sampled ("eval" or "test").
        rows: rows in the sample.
        seed: the sampling seed.
        baseline_loss, baseline_accuracy: the unchanged model on the sample (mean
            cross-entropy in nats; accuracy 0..1).
        layer_heads: heads per encoder layer, length L.
        layers: one :class:`Effect` per layer (None: not measured), length L.
        heads: per layer, one Effect per head (``heads[i][h]``), L lists of h_i.
        ffn: one Effect per layer's FFN (None for a layer with no FFN), length L.
        linears: module name -> Effect of int8-quantizing only it.
        complete: every planned measurement is in (False in a live, partial report).
    """

    split: str
    rows: int
    seed: int
    baseline_loss: float
    baseline_accuracy: float
    layer_heads: list[int]
    layers: list[Effect | None] = field(default_factory=list)
    heads: list[list[Effect | None]] = field(default_factory=list)
    ffn: list[Effect | None] = field(default_factory=list)
    linears: dict[str, Effect] = field(default_factory=dict)
    complete: bool = False

    @classmethod
    def empty(
        cls, layer_heads: Sequence[int], *, split: str = "eval", rows: int = 0, seed: int = 0,
        baseline_loss: float = math.nan, baseline_accuracy: float = math.nan,
    ) -> SensitivityReport:  # fmt: skip
        """A report with every slot unmeasured, for a model of these heads per layer."""
        heads = [int(h) for h in layer_heads]
        return cls(
            split, rows, seed, baseline_loss, baseline_accuracy, heads,
            layers=[None] * len(heads), heads=[[None] * h for h in heads],
            ffn=[None] * len(heads),
        )  # fmt: skip

    @property
    def num_layers(self) -> int:
        return len(self.layer_heads)

    def add(self, kind: Kind, key: Any, effect: Effect) -> None:
        """Put one measured effect in its slot (``key`` as in :class:`Measurement`)."""
        if kind == "layer":
            self.layers[int(key)] = effect
        elif kind == "ffn":
            self.ffn[int(key)] = effect
        elif kind == "head":
            layer, head = key
            self.heads[int(layer)][int(head)] = effect
        elif kind == "linear":
            self.linears[str(key)] = effect
        else:
            raise ValueError(f"unknown kind {kind!r}")

    # ------------------------------------------------------------------ questions
    def layer_costs(self, measure: Measure = "loss") -> list[float]:
        """Cost of dropping each layer, length L (NaN where not measured)."""
        return [e.cost(measure) if e else math.nan for e in self.layers]

    def head_costs(self, measure: Measure = "loss") -> list[list[float]]:
        """Cost of removing each head, ``[layer][head]`` (NaN where not measured)."""
        return [[e.cost(measure) if e else math.nan for e in row] for row in self.heads]

    def ffn_costs(self, measure: Measure = "loss") -> list[float]:
        """Cost of removing each layer's FFN, length L (NaN where not measured)."""
        return [e.cost(measure) if e else math.nan for e in self.ffn]

    def linear_costs(self, measure: Measure = "kl") -> dict[str, float]:
        """Module name -> cost of int8-quantizing only it (KL by default, as the guard scores)."""
        return {name: e.cost(measure) for name, e in self.linears.items()}

    def layers_to_keep(self, n: int, measure: Measure = "loss") -> list[int]:
        """The ``n`` layers whose removal costs most, in model order (a student's layers).

        Unmeasured layers count as most costly (kept first). Ties keep the earlier layer.

        Raises:
            ValueError: ``n`` outside 1..L.
        """
        if not 1 <= n <= self.num_layers:
            raise ValueError(f"n must be between 1 and {self.num_layers}, not {n}")
        costs = [math.inf if math.isnan(c) else c for c in self.layer_costs(measure)]
        ranked = sorted(range(self.num_layers), key=lambda i: (-costs[i], i))
        return sorted(ranked[:n])

    def heads_to_remove(self, fraction: float, measure: Measure = "loss") -> dict[int, list[int]]:
        """The cheapest ``fraction`` of all heads: layer -> head numbers (sorted).

        ``round(fraction * total heads)`` heads are chosen, least costly first; unmeasured
        heads are never chosen. Layers with none chosen are left out.

        Raises:
            ValueError: ``fraction`` outside [0, 1].
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
        costs = self.head_costs(measure)
        pairs = [
            (c, i, h) for i, row in enumerate(costs) for h, c in enumerate(row) if not math.isnan(c)
        ]
        count = round(fraction * sum(self.layer_heads))
        out: dict[int, list[int]] = {}
        for _, i, h in sorted(pairs)[:count]:
            out.setdefault(i, []).append(h)
        return {i: sorted(hs) for i, hs in sorted(out.items())}

    def ffn_to_remove(self, n: int, measure: Measure = "loss") -> list[int]:
        """The ``n`` layers whose FFN costs least to remove, in model order."""
        costs = [(c, i) for i, c in enumerate(self.ffn_costs(measure)) if not math.isnan(c)]
        return sorted(i for _, i in sorted(costs)[: max(0, n)])

    def linears_to_keep_float(
        self, budget: int, measure: Measure = "kl", *, min_cost: float = 0.0
    ) -> list[str]:
        """At most ``budget`` linears to keep in float, most costly in int8 first.

        Only modules whose cost is above ``min_cost`` are named (a module int8 does not
        hurt is never worth keeping in float).
        """
        costs = self.linear_costs(measure)
        ranked = sorted((n for n in costs if costs[n] > min_cost), key=lambda n: -costs[n])
        return ranked[: max(0, budget)]

    def most_sensitive(self, kind: Kind, count: int = 5, measure: Measure = "loss"):
        """The ``count`` most costly measured items of ``kind``: [(key, Effect)], worst first."""
        items: list[tuple[Any, Effect]]
        if kind == "layer":
            items = [(i, e) for i, e in enumerate(self.layers) if e]
        elif kind == "ffn":
            items = [(i, e) for i, e in enumerate(self.ffn) if e]
        elif kind == "head":
            items = [
                ((i, h), e) for i, row in enumerate(self.heads) for h, e in enumerate(row) if e
            ]
        else:
            items = list(self.linears.items())
        return sorted(items, key=lambda kv: -kv[1].cost(measure))[:count]

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        def one(e: Effect | None) -> dict[str, float] | None:
            return e.to_dict() if e else None

        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "split": self.split,
            "rows": self.rows,
            "seed": self.seed,
            "baseline": {"loss": self.baseline_loss, "accuracy": self.baseline_accuracy},
            "layer_heads": list(self.layer_heads),
            "layers": [one(e) for e in self.layers],
            "heads": [[one(e) for e in row] for row in self.heads],
            "ffn": [one(e) for e in self.ffn],
            "linears": {name: e.to_dict() for name, e in self.linears.items()},
            "complete": self.complete,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = REPORT_FILE) -> SensitivityReport:
        """Rebuild a report from :meth:`to_dict`'s output.

        Raises:
            UserError: not a sensitivity report, a newer version, or a malformed field.
        """
        if not isinstance(data, Mapping) or data.get("format") != REPORT_FORMAT:
            raise UserError(f"{where} is not a SlimPajama Studio sensitivity report.")
        if int(data.get("version", 0)) > REPORT_VERSION:
            raise UserError(
                f"{where} was written by a newer SlimPajama Studio (version "
                f"{data.get('version')}); update the app to read it."
            )

        def one(e: Any) -> Effect | None:
            return Effect.from_dict(e) if e else None

        try:
            heads = [int(h) for h in data["layer_heads"]]
            report = cls(
                split=str(data["split"]), rows=int(data["rows"]), seed=int(data["seed"]),
                baseline_loss=float(data["baseline"]["loss"]),
                baseline_accuracy=float(data["baseline"]["accuracy"]),
                layer_heads=heads,
                layers=[one(e) for e in data["layers"]],
                heads=[[one(e) for e in row] for row in data["heads"]],
                ffn=[one(e) for e in data["ffn"]],
                linears={str(k): Effect.from_dict(v) for k, v in data["linears"].items()},
                complete=bool(data.get("complete", False)),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(
                f"{where} is damaged ({type(exc).__name__}: {exc}); run the sensitivity step again."
            ) from None
        shapes_ok = len(report.layers) == len(heads) == len(report.ffn) == len(
            report.heads
        ) and all(len(row) == h for row, h in zip(report.heads, heads, strict=True))
        if not shapes_ok:
            raise UserError(
                f"{where} is damaged (its per-layer lists do not match layer_heads); "
                "run the sensitivity step again."
            )
        return report

    def save(self, folder: Path | str) -> Path:
        """Write ``folder/sensitivity.json`` atomically (old file or new, never half)."""
        path = Path(folder) / REPORT_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=True) + "\n")
        return path


def load_report(path: Path | str) -> SensitivityReport:
    """Read a saved report: a ``sensitivity.json`` file or the folder holding one.

    Raises:
        UserError: no such file, not a report, or a damaged one (the sentence names it).
    """
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist; run a sensitivity step to make it.")
    return SensitivityReport.from_dict(read_json(path), where=str(path))


def find_report(folder: Path | str | None) -> SensitivityReport | None:
    """The report saved in ``folder``, or None when there is none (or it cannot be read)."""
    if folder is None or not (Path(folder) / REPORT_FILE).is_file():
        return None
    try:
        return load_report(folder)
    except UserError:
        return None


# --------------------------------------------------------------------------- measuring


def planned(layer_heads: Sequence[int], linears: Sequence[str], kinds: Iterable[Kind]) -> int:
    """How many ablations :func:`measure_sensitivity` runs (each is one pass over the sample)."""
    kinds = set(kinds)
    n = 0
    n += len(layer_heads) if "layer" in kinds else 0
    n += sum(layer_heads) if "head" in kinds else 0
    n += len(layer_heads) if "ffn" in kinds else 0
    n += len(linears) if "linear" in kinds else 0
    return n


def int8_candidates(model: Any) -> list[str]:
    """The linears a dynamic-int8 quantization would change (the ``linear`` ablations)."""
    from slimpajama_gui.core.techniques.quantize.methods import quantizable_modules

    return quantizable_modules(model, embeddings=False)


def measure_sensitivity(
    model: Any,
    batches: Sequence[Mapping[str, Any]],
    *,
    kinds: Iterable[Kind] = KINDS,
    split: str = "eval",
    seed: int = 0,
    on_measured: Callable[[Measurement, SensitivityReport], None] | None = None,
    check: Callable[[], None] | None = None,
) -> SensitivityReport:
    """Measure what dropping each layer, head and FFN and int8-ing each linear costs.

    Args:
        model: a float :class:`~slimpajama_gui.core.model.encoder.EncoderClassifier`
            (not changed; quantized models are refused).
        batches: padded batches with ``input_ids``, ``attention_mask``, optional
            ``token_type_ids`` (B, T) and ``labels`` (B,); reused for every pass.
        kinds: which ablations to run (default all four).
        split, seed: recorded in the report (where and how ``batches`` were sampled).
        on_measured: called after each measurement with it and the report so far.
        check: called before each pass; raises to stop (the job's stop check).

    Returns:
        A complete :class:`SensitivityReport`.

    Raises:
        UserError: a quantized model, or batches without labels.
        Whatever ``check`` raises.
    """
    import torch

    if getattr(model, "quantization", None) is not None:
        raise UserError(
            "sensitivity: the model is already quantized; measure sensitivity before the "
            "quantize step, on the float model."
        )
    batches = list(batches)
    if not batches or any("labels" not in b for b in batches):
        raise UserError("sensitivity: the sample has no labelled rows to measure on.")
    kinds = [k for k in KINDS if k in set(kinds)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        base_logits = _logits(model, batches, device)
        labels = torch.cat([b["labels"] for b in batches]).long()
        base_loss, base_acc = _loss_accuracy(base_logits, labels)
        heads = [int(layer.attention.num_heads) for layer in model.layers]
        rows = int(labels.shape[0])
        report = SensitivityReport.empty(
            heads, split=split, rows=rows, seed=seed,
            baseline_loss=base_loss, baseline_accuracy=base_acc,
        )  # fmt: skip
        linears = int8_candidates(model) if "linear" in kinds else []
        total = planned(heads, linears, kinds)
        prefix = _Prefix.of(model, batches, device)
        for done, (kind, key, ablate) in enumerate(_ablations(model, kinds, linears), 1):
            if check is not None:
                check()
            with ablate() as changed:
                if prefix is not None:
                    logits = prefix.logits(changed, _first_changed(kind, key, len(heads)))
                else:
                    logits = _logits(changed, batches, device)
            loss, acc = _loss_accuracy(logits, labels)
            effect = Effect(loss - base_loss, acc - base_acc, _kl(base_logits, logits))
            report.add(kind, key, effect)
            if on_measured is not None:
                on_measured(Measurement(kind, key, effect, done, total), report)
        report.complete = True
        return report
    finally:
        model.train(was_training)


#: The unchanged model's layer inputs are kept for the sample while they fit in this many
#: bytes; beyond, every pass starts again at the embeddings.
CACHE_LIMIT_BYTES = 512 * 2**20


def _first_changed(kind: Kind, key: Any, num_layers: int) -> int:
    """The first encoder layer an ablation changes (``num_layers``: only the head)."""
    if kind in ("layer", "ffn"):
        return int(key)
    if kind == "head":
        return int(key[0])
    parts = str(key).split(".")
    return int(parts[1]) if parts[0] == "layers" else num_layers


class _Prefix:
    """The unchanged model's input to every encoder layer on each sample batch.

    An ablation in layer ``i`` leaves layers ``0..i-1`` as they were, so its pass starts
    from layer ``i``'s saved input: on average about half the work of a whole pass. The
    rest of the forward pass is :class:`EncoderClassifier`'s own, step for step (the
    tests check every ablation against the compressed model run whole).
    """

    def __init__(self, states: list[list[Any]], masks: list[Any]) -> None:
        self.states, self.masks = states, masks

    @classmethod
    def of(cls, model: Any, batches: Sequence[Mapping[str, Any]], device: Any) -> _Prefix | None:
        import torch

        hidden = model.config.hidden_size
        layers = len(model.layers)
        size = sum(b["input_ids"].numel() for b in batches) * hidden * 4 * (layers + 1)
        if size > CACHE_LIMIT_BYTES:
            return None
        states, masks = [], []
        with torch.inference_mode():
            for b in batches:
                types = b.get("token_type_ids")
                x = model.embeddings(
                    b["input_ids"].to(device), types.to(device) if types is not None else None
                )  # (B, T, C)
                keep = b["attention_mask"].to(device)[:, None, None, :].to(x.dtype)
                mask = (1.0 - keep) * torch.finfo(x.dtype).min  # (B, 1, 1, T), as forward
                inputs = [x]
                for layer in model.layers:
                    x, _ = layer(x, mask)
                    inputs.append(x)
                states.append(inputs)
                masks.append(mask)
        return cls(states, masks)

    def logits(self, model: Any, start: int) -> Any:
        """Logits (N, C) of ``model`` run from the saved input of layer ``start``."""
        import torch

        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        out = []
        with torch.inference_mode():
            for inputs, mask in zip(self.states, self.masks, strict=True):
                x, m = inputs[start].to(device), mask.to(device)
                for layer in list(model.layers)[start:]:
                    x, _ = layer(x, m)
                pooled = model.pooler(x) if model.pooler is not None else x[:, 0]
                out.append(model.classifier(model.dropout(pooled)).float().cpu())
        return torch.cat(out)  # (N, C)


def _ablations(model: Any, kinds: Sequence[Kind], linears: Sequence[str]) -> Iterator:
    """(kind, key, context manager yielding the changed model), in report order."""
    for kind in kinds:
        if kind == "layer":
            for i in range(len(model.layers)):
                yield kind, i, (lambda i=i: _without_layer(model, i))
        elif kind == "head":
            for i, layer in enumerate(model.layers):
                for h in range(layer.attention.num_heads):
                    yield kind, (i, h), (lambda i=i, h=h: _without_head(model, i, h))
        elif kind == "ffn":
            for i in range(len(model.layers)):
                yield kind, i, (lambda i=i: _without_ffn(model, i))
        elif kind == "linear":
            for name in linears:
                yield kind, name, (lambda name=name: _int8_only(model, name))


@contextmanager
def _without_layer(model: Any, index: int) -> Iterator[Any]:
    from torch import nn

    layers = model.layers
    model.layers = nn.ModuleList(layer for i, layer in enumerate(layers) if i != index)
    try:
        yield model
    finally:
        model.layers = layers


def _all_kept(model: Any):
    import torch

    from slimpajama_gui.core.techniques.prune.structured import StructureMasks

    return StructureMasks(
        heads=[torch.ones(layer.attention.num_heads, dtype=torch.bool) for layer in model.layers],
        ffn=[
            torch.ones(layer.ffn.intermediate.out_features, dtype=torch.bool)
            for layer in model.layers
        ],
    )


def _without_head(model: Any, layer: int, head: int):
    # The structured pruner's own masks: what prune_structure would leave, unbuilt.
    from slimpajama_gui.core.techniques.prune.structured import masked_structure

    masks = _all_kept(model)
    masks.heads[layer][head] = False
    return masked_structure(model, masks)


def _without_ffn(model: Any, layer: int):
    from slimpajama_gui.core.techniques.prune.structured import masked_structure

    masks = _all_kept(model)
    masks.ffn[layer][:] = False
    return masked_structure(model, masks)


@contextmanager
def _int8_only(model: Any, name: str) -> Iterator[Any]:
    from slimpajama_gui.core.techniques.quantize.methods import quantize_model

    every = set(int8_candidates(model))
    result = quantize_model(
        model, "dynamic_int8", per_channel=True, embeddings=False, skip=every - {name}
    )
    yield result.model


def _logits(model: Any, batches: Sequence[Mapping[str, Any]], device: Any):
    import torch

    # Dynamic int8 copies run on the CPU whatever the float model's device.
    param = next(model.parameters(), None)
    run_on = param.device if param is not None and param.dtype.is_floating_point else device
    if getattr(model, "quantization", None) is not None:
        run_on = torch.device("cpu")
    out = []
    with torch.inference_mode():
        for b in batches:
            types = b.get("token_type_ids")
            logits = model(
                input_ids=b["input_ids"].to(run_on),
                attention_mask=b["attention_mask"].to(run_on),
                token_type_ids=types.to(run_on) if types is not None else None,
            ).logits
            out.append(logits.float().cpu())
    return torch.cat(out)  # (N, C)


def _loss_accuracy(logits: Any, labels: Any) -> tuple[float, float]:
    import torch.nn.functional as F

    loss = float(F.cross_entropy(logits, labels))
    accuracy = float((logits.argmax(-1) == labels).float().mean())
    return loss, accuracy


def _kl(reference: Any, other: Any) -> float:
    log_p, log_q = reference.log_softmax(-1), other.log_softmax(-1)
    return float((log_p.exp() * (log_p - log_q)).sum(-1).mean())
