"""The search space of a ``search`` step: which chains of the app's own steps a trial may
run (student depth, heads and FFN shares, vocabulary, int8 backend), how Optuna's trial
proposes one (:func:`suggest`), which chains go first (:func:`warm_start`: the ones that
train nothing), and their names in reports. No torch; :mod:`.search` runs them.
"""

from __future__ import annotations

from typing import Any

from slimpajama_gui.core.model.shape import default_student_layers
from slimpajama_gui.core.plan.search_step import Search
from slimpajama_gui.core.plan.steps import Distill, Prune, Quantize, Step

PRUNE_SHARES = (0.0, 0.25, 0.5)
#: "onnxruntime-emb4": onnxruntime int8 with the word embeddings in 4 bits.
QUANTIZE_CHOICES = ("none", "pytorch", "onnxruntime", "onnxruntime-emb4")

# --------------------------------------------------------------------------- the space


def student_depths(step: Search, layers: int) -> list[int]:
    """Encoder depths a trial may keep, deepest first; ``layers`` means no distillation."""
    if "distill" not in step.techniques or layers <= 1:
        return [layers]
    if step.depths:
        return sorted({d for d in step.depths if d <= layers} | {layers}, reverse=True)
    picks = {layers, max(1, round(2 * layers / 3)), max(1, layers // 2), max(1, layers // 3)}
    return sorted(picks, reverse=True)


def kept_layers(depth: int, layers: int) -> list[int]:
    """Teacher layers a ``depth``-layer student keeps: spread out, the last one kept."""
    if depth * 2 == layers:
        return default_student_layers(layers)
    return sorted({min(layers - 1, round((i + 1) * layers / depth) - 1) for i in range(depth)})


def suggest(trial: Any, step: Search, layers: int) -> dict[str, Any]:
    """The chain's parameters, asked of the Optuna ``trial`` (only enabled techniques)."""
    params: dict[str, Any] = {"depth": layers, "heads": 0.0, "ffn": 0.0,
                              "vocabulary": False, "quantize": "none"}  # fmt: skip
    depths = student_depths(step, layers)
    if len(depths) > 1:
        params["depth"] = trial.suggest_categorical("depth", depths)
    if "heads" in step.techniques:
        params["heads"] = trial.suggest_categorical("heads", list(PRUNE_SHARES))
    if "ffn" in step.techniques:
        params["ffn"] = trial.suggest_categorical("ffn", list(PRUNE_SHARES))
    if "vocabulary" in step.techniques:
        params["vocabulary"] = trial.suggest_categorical("vocabulary", [False, True])
    if "quantize" in step.techniques:
        params["quantize"] = trial.suggest_categorical("quantize", list(QUANTIZE_CHOICES))
    return params


def warm_start(step: Search, layers: int) -> list[dict[str, Any]]:
    """The chains tried first: those without training (int8 in onnxruntime, with and
    without vocabulary pruning). They take minutes where a trained chain takes tens, so
    a best-so-far exists early; the sampler proposes the rest. Only enabled techniques'
    parameters are fixed."""
    if "quantize" not in step.techniques:
        return [{"vocabulary": True}] if "vocabulary" in step.techniques else []
    base: dict[str, Any] = {"quantize": "onnxruntime"}
    if len(student_depths(step, layers)) > 1:
        base["depth"] = layers
    for name in ("heads", "ffn"):
        if name in step.techniques:
            base[name] = 0.0
    if "vocabulary" not in step.techniques:
        return [base]
    return [{**base, "vocabulary": True}, {**base, "vocabulary": False}]


def chain_for(params: dict[str, Any], step: Search, layers: int, report: Any = None) -> list[Step]:
    """The trial's steps, in the order the presets apply them; [] = the starting model.

    ``report``: a :class:`~slimpajama_gui.core.techniques.sensitivity.SensitivityReport` of
    the starting model; a student then keeps the layers whose removal costs most
    (``layers_to_keep``) instead of layers spread evenly.
    """
    train = {"learning_rate": step.learning_rate, "batch_size": step.batch_size}
    chain: list[Step] = []
    if params["depth"] < layers:
        depth = params["depth"]
        kept = report.layers_to_keep(depth) if report is not None else kept_layers(depth, layers)
        chain.append(Distill(student_layers=kept,
                             temperature=2.0, alpha_kd=0.5, hidden_mse=1.0,
                             epochs=step.epochs, **train))  # fmt: skip
    for method in ("heads", "ffn"):
        if params[method] > 0:
            chain.append(Prune(method=method, amount=params[method],
                               recovery_epochs=step.epochs, **train))  # fmt: skip
    if params["vocabulary"]:
        chain.append(Prune(method="vocabulary"))
    if params["quantize"] != "none":
        # The guard may lose what the search allows; the search judges the whole chain.
        emb4 = params["quantize"] == "onnxruntime-emb4"
        chain.append(Quantize(method="dynamic_int8",
                              backend="onnxruntime" if emb4 else params["quantize"],
                              embedding_bits=4 if emb4 else 8,
                              tolerance=max(step.budget_points, 0.1)))  # fmt: skip
    for s in chain:
        s.validate()
    return chain


def describe_chain(params: dict[str, Any], layers: int) -> str:
    """``"3-layer student, heads −25 %, vocabulary, int8 (onnxruntime)"``."""
    parts = []
    if params["depth"] < layers:
        parts.append(f"{params['depth']}-layer student")
    for name in ("heads", "ffn"):
        if params[name] > 0:
            parts.append(f"{'heads' if name == 'heads' else 'FFN'} −{100 * params[name]:g} %")
    if params["vocabulary"]:
        parts.append("vocabulary")
    if params["quantize"] != "none":
        backend = params["quantize"].replace("-emb4", ", 4-bit embeddings")
        parts.append(f"int8 ({backend})")
    return ", ".join(parts) or "starting model"
