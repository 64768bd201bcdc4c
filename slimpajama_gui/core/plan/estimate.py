"""What a chain should leave of a model — parameters, size, layers — from its shape alone.

No weights are loaded and torch is not imported: :func:`estimate_chain` is arithmetic on
the :class:`~slimpajama_gui.core.model.inspection.ModelInfo` read from safetensors headers,
so the wizard's review page can draw it on the GUI thread. :func:`count_vocabulary`
(tokenizing the training texts) is the one slow part; run it on a worker.

Example:
    >>> est = estimate_chain(info, [Quantize(method="dynamic_int8")])  # doctest: +SKIP
    >>> est.headline()  # doctest: +SKIP
    '≈ 23.1 MB on disk, 3.9× smaller than 90.9 MB; ≈ 22.7 M parameters (+0 %)'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slimpajama_gui.core.model.inspection import ModelInfo
from slimpajama_gui.core.model.shape import (
    attention_width,
    default_student_layers,
    layer_ffn,
    layer_heads,
    layer_parameters,
)
from slimpajama_gui.core.model.tokenizers import common_token_ids, load_tokenizer
from slimpajama_gui.core.plan.static_step import DistillStatic
from slimpajama_gui.core.plan.steps import (
    KEEP_GENERAL,
    Benchmark,
    Distill,
    Evaluate,
    Export,
    FineTune,
    Prune,
    Quantize,
    Sensitivity,
    Step,
)
from slimpajama_gui.core.units import human_bytes, human_count

#: Share of a BERT vocabulary an English sentence data set uses (SST-2 train: 11.6k of
#: 30.5k ids); the estimate's fallback until the real count is known.
VOCAB_SHARE_GUESS = 11_600 / 30_522
#: Share of ``keep_general`` ids the training data does not use already (SST-2 train:
#: keep_general 20,000 added 10,771 ids to its 11,575); the fallback's other part.
GENERAL_NEW_SHARE = 10_771 / 20_000


@dataclass
class Estimate:
    """What a chain should leave of a model, from its shape alone (no weights loaded).

    Sizes are bytes on disk; ``heads_*`` and ``ffn_*`` list one value per layer;
    ``weights_*`` name the storage type (``"fp32"``, ``"int8 (onnxruntime)"``, ...).
    """

    parameters_before: int
    parameters_after: int
    nonzero_after: int
    size_before: int
    size_after: int
    layers_before: int
    layers_after: int
    heads_before: list[int]
    heads_after: list[int]
    ffn_before: list[int]
    ffn_after: list[int]
    vocab_before: int
    vocab_after: int
    vocab_counted: bool
    weights_before: str
    weights_after: str
    notes: list[str] = field(default_factory=list)
    #: The chain holds a ``search`` step: the model it ends with is whichever trial the
    #: search keeps, so the "after" figures above describe the chain without it.
    searched: bool = False

    @property
    def size_ratio(self) -> float:
        """How many times smaller the file gets (``size_before / size_after``)."""
        return self.size_before / max(self.size_after, 1)

    def headline(self) -> str:
        """``"≈ 10.3 MB on disk, 8.8× smaller than 90.9 MB; ≈ 10.1 M parameters (−56 %)"``,
        or, for a chain with a search, that the search's trials measure it."""
        if self.searched:
            return (
                f"Size and speed depend on the trial the search keeps (each is measured as "
                f"it finishes); the starting model is {human_bytes(self.size_before)}, "
                f"{human_count(self.parameters_before)} parameters"
            )
        change = 100.0 * (self.parameters_after / max(self.parameters_before, 1) - 1.0)
        sign = "−" if change < 0 else "+"
        return (
            f"≈ {human_bytes(self.size_after)} on disk, {self.size_ratio:.1f}× smaller than "
            f"{human_bytes(self.size_before)}; ≈ {human_count(self.parameters_after)} "
            f"parameters ({sign}{abs(change):.0f} %)"
        )


def estimate_chain(
    info: ModelInfo, steps: Sequence[Step], *, vocab_kept: int | None = None, num_labels: int = 2
) -> Estimate:
    """Parameters and size a chain should leave, from ``info`` and the steps only.

    Parameters follow the layer arithmetic of a BERT encoder
    (:mod:`slimpajama_gui.core.model.shape`); bytes per weight are 4 (fp32), 2
    (fp16/bf16), 1 (int8, plus a scale per row) or 0.625 (int4 with a bf16 scale and
    offset per 32 weights). Unstructured pruning only zeroes weights, so it lowers the
    non-zero count, not the size.

    Args:
        info: the model's header summary.
        steps: the chain, in order.
        vocab_kept: token ids vocabulary pruning keeps (:func:`count_vocabulary`), when
            counted; otherwise
            :data:`VOCAB_SHARE_GUESS` of the vocabulary.
        num_labels: classes of a new classifier head (when the model has none).
    """
    hidden = info.hidden
    n = info.layers
    heads = layer_heads(info)
    ffn = layer_ffn(info)
    head_dim = [attention_width(info, i) / max(heads[i], 1) for i in range(n)]
    layers = [(heads[i], head_dim[i], ffn[i]) for i in range(n)]
    vocab = info.vocab
    notes: list[str] = []

    def totals(state: list[tuple[int, float, int]], vocab_size: int) -> tuple[float, float]:
        per_layer = [layer_parameters(hidden, *s) for s in state]
        every = sum(p[0] for p in per_layer) + vocab_size * hidden
        return every, sum(p[1] for p in per_layer)

    before_all, _ = totals(layers, vocab)
    other_emb = max(info.embedding_params - vocab * hidden, 0)
    head_extra = hidden * num_labels + num_labels if info.num_labels is None else 0
    vocab_counted = False
    sparsity = 0.0
    quant: Quantize | None = None
    for step in steps:
        if isinstance(step, Distill) and layers:
            keep = [i for i in (step.student_layers or default_student_layers(len(layers)))]
            layers = [layers[i] for i in keep if 0 <= i < len(layers)]
            if step.ffn_fraction:
                layers = [(h, d, max(1, round(f * (1 - step.ffn_fraction)))) for h, d, f in layers]
        elif isinstance(step, Prune):
            if step.method == "layers" and step.keep_layers:
                layers = [layers[i] for i in step.keep_layers if 0 <= i < len(layers)]
            elif step.method == "heads":
                layers = [(max(1, round(h * (1 - step.amount))), d, f) for h, d, f in layers]
            elif step.method == "ffn":
                layers = [(h, d, max(1, round(f * (1 - step.amount)))) for h, d, f in layers]
            elif step.method == "magnitude":
                sparsity = 1 - (1 - sparsity) * (1 - step.amount)
            elif step.method == "vocabulary":
                if vocab_kept is not None:
                    vocab, vocab_counted = min(vocab, vocab_kept), True
                else:
                    guess = vocab * VOCAB_SHARE_GUESS + GENERAL_NEW_SHARE * step.keep_general
                    vocab = min(vocab, round(guess))
                    notes.append(
                        "The vocabulary kept is a guess (about 38 % of a BERT vocabulary for "
                        "English sentences, plus the common tokens kept for general text) "
                        "until the training data has been counted."
                    )
        elif isinstance(step, Quantize):
            quant = step
        elif isinstance(step, DistillStatic):
            return _static_estimate(info, step, vocab, vocab_counted, notes, num_labels)
    after_all, linear = totals(layers, vocab)
    parameters_after = max(int(round(info.parameters + head_extra + after_all - before_all)), 0)
    nonzero = int(round(parameters_after - sparsity * linear))
    if sparsity:
        notes.append(
            "Unstructured pruning sets weights to zero; the file keeps its size unless it is "
            "compressed, but the non-zero count drops."
        )

    per_weight = info.weights_bytes / info.parameters if info.parameters else 4.0
    if not info.weights_bytes:
        per_weight = 4.0
    word = vocab * hidden
    # Pooler and classifier are linear layers too; quantizers treat them as such.
    quantizable = linear + max(info.other_params, 0)
    rest = max(parameters_after - quantizable - word, 0)
    weights_before = {"f32": "fp32", "f16": "fp16"}.get(info.dtype.lower(), info.dtype.lower())
    if quant is None:
        weight_bytes = parameters_after * per_weight
        weights_after = weights_before
    elif quant.method in ("fp16", "bf16"):
        weight_bytes = parameters_after * 2.0
        weights_after = quant.method
    elif quant.backend == "onnxruntime":
        # onnxruntime's dynamic quantization makes every MatMul and Gather int8,
        # position and type tables included.
        rest = max(parameters_after - quantizable - word - other_emb, 0)
        weight_bytes = quantizable + word + other_emb + rest * 4.0
        weights_after = "int8 (onnxruntime)"
        if quant.embedding_bits == 4:
            # Half a byte a value, plus a 4-byte scale and a 4-bit zero point per block
            # of 32 (onnx_int8.EMBEDDING_BLOCK): 0.64 bytes a value instead of 1.
            weight_bytes += word * (0.5 + 4.5 / 32 - 1.0)
            weights_after = "int8 (onnxruntime), word embeddings 4-bit"
    else:
        per_q = 0.625 if quant.method == "weight_int4" else 1.0
        row_overhead = 8 * vocab if quant.embeddings else 0
        emb_bytes = word * per_q + row_overhead if quant.embeddings else word * per_weight
        weight_bytes = quantizable * per_q + emb_bytes + rest * per_weight
        weights_after = "int4" if quant.method == "weight_int4" else "int8"
    if quant is not None and quant.backend == "pytorch" and quant.tolerance < 100:
        notes.append(
            "The accuracy guard may keep a few sensitive layers in float, which makes the "
            "file somewhat larger."
        )
    extra = max(info.size_bytes - info.weights_bytes, 0)
    extra_after = extra * (vocab / info.vocab if info.vocab else 1.0)
    searched = any(step.step_type == "search" for step in steps)
    return Estimate(
        parameters_before=info.parameters,
        parameters_after=parameters_after,
        nonzero_after=nonzero,
        size_before=info.size_bytes,
        size_after=int(round(weight_bytes + extra_after)),
        layers_before=n,
        layers_after=len(layers),
        heads_before=heads,
        heads_after=[h for h, _, _ in layers],
        ffn_before=ffn,
        ffn_after=[f for _, _, f in layers],
        vocab_before=info.vocab,
        vocab_after=vocab,
        vocab_counted=vocab_counted,
        weights_before=weights_before,
        weights_after=weights_after,
        notes=notes,
        searched=searched,
    )


#: Bytes per vector entry of each static storage (int8 adds a float32 scale per row).
STATIC_BYTES = {"float32": 4.0, "float16": 2.0, "int8": 1.0}


def _static_estimate(
    info: ModelInfo,
    step: DistillStatic,
    vocab: int,
    vocab_counted: bool,
    notes: list[str],
    num_labels: int,
) -> Estimate:
    """What ``distill_static`` leaves: V x D vectors and a linear head (nothing after it
    may change the model, :func:`~.static_step.check_static_chain`)."""
    dims = min(step.dims, info.hidden)
    labels = info.num_labels or num_labels
    head = dims * labels + labels
    vectors = vocab * dims
    weight_bytes = vectors * STATIC_BYTES[step.storage] + 4 * head
    if step.storage == "int8":
        weight_bytes += 4 * vocab
    extra = max(info.size_bytes - info.weights_bytes, 0)
    extra_after = extra * (vocab / info.vocab if info.vocab else 1.0)
    notes.append(
        "Static embeddings average one vector per token: no attention layers, so far faster "
        "than the teacher, and usually several points less accurate (the evaluate step "
        "measures it)."
    )
    return Estimate(
        parameters_before=info.parameters, parameters_after=vectors + head,
        nonzero_after=vectors + head, size_before=info.size_bytes,
        size_after=int(round(weight_bytes + extra_after)), layers_before=info.layers,
        layers_after=0, heads_before=layer_heads(info), heads_after=[],
        ffn_before=layer_ffn(info), ffn_after=[], vocab_before=info.vocab, vocab_after=vocab,
        vocab_counted=vocab_counted,
        weights_before={"f32": "fp32", "f16": "fp16"}.get(info.dtype.lower(), info.dtype.lower()),
        weights_after=f"static {step.storage}", notes=notes,
    )  # fmt: skip


def count_vocabulary(
    key: tuple, folder: Path, texts: list[str], keep_general: int = KEEP_GENERAL
) -> tuple[tuple, int]:
    """Token ids vocabulary pruning would keep (used by ``texts``, special, and the
    tokenizer's ``keep_general`` most common tokens), with ``key``.

    Slow (tokenizes every text): run it on a worker. ``key`` comes back unchanged so the
    caller can tell which model and data the count belongs to.

    Raises:
        UserError: ``folder`` has no readable tokenizer.
    """
    tokenizer = load_tokenizer(folder)
    used: set[int] = set()
    for start in range(0, len(texts), 2048):
        for ids in tokenizer(texts[start : start + 2048], add_special_tokens=True)["input_ids"]:
            used.update(ids)
    used.update(int(i) for i in tokenizer.all_special_ids)
    used.update(common_token_ids(tokenizer, keep_general))
    return key, len(used)


# --------------------------------------------------------------------------- step cost

# Rough costs in forward passes of one row, measured once with MiniLM-L6 on the demo data
# on two busy CPU cores (a job replaces the absolute speed by its own measurement; these
# only set the shares of the steps it has not run yet).
#: A training row: forward, backward, optimizer step, shuffled (more padded) batches.
TRAIN_PASS = 7.0
#: A PyTorch dynamic-int8 forward pass relative to float (slower on CPUs without VNNI).
INT8_SPEED = 2.0
#: An onnxruntime int8 forward pass relative to PyTorch float.
ORT_INT8_SPEED = 0.5
#: Exporting to ONNX (tracing, writing, loading the session), in rows' worth of work.
EXPORT_ROWS = 400.0
#: Saving a variant (weights, tokenizer, record), in rows' worth of work.
SAVE_ROWS = 100.0
#: distill_static's pass of every token (30,522 three-token inputs for BERT's vocabulary)
#: in rows' worth of work, and a static model's forward cost relative to the teacher's.
STATIC_TOKEN_ROWS = 3000.0
STATIC_SHARE = 0.005
#: Seconds an automatic benchmark fills with timed batch-1 passes (fewer if 20 fit).
BENCH_BUDGET_S = 3.0


@dataclass(frozen=True)
class StepWork:
    """Expected cost of one step, to weight a job's progress by.

    ``units`` is work in forward-pass equivalents: rows × compute parameters (the
    encoder's, not the embedding table's, which is a lookup); its seconds come from the
    speed a job measures on this machine. ``fixed_s`` is the part that does not scale
    with the data (an automatic benchmark's time budget), in seconds.
    """

    units: float
    fixed_s: float = 0.0


def step_work(
    steps: Sequence[Step],
    *,
    parameters: float,
    layers: int,
    train_rows: int,
    eval_rows: int,
    test_rows: int = 0,
) -> list[StepWork]:
    """The expected cost of each step of a chain, from the data's size and the model's.

    Costs follow what each step runs: training rows × epochs (capped by ``max_steps``)
    at :data:`TRAIN_PASS`, an evaluation of the eval split per epoch, importance-scoring
    batches, the guard's accuracy checks, ONNX export, a benchmark's sentences or time
    budget. The model shrinks as the chain prunes or distils it and runs faster once it is
    int8. Only ratios matter: the seconds come from the rate a job measures.

    Args:
        parameters: compute parameters of the source model (encoder layers, not the
            embedding table).
        layers: its encoder layers.
        train_rows, eval_rows, test_rows: rows of each split (0 if absent).

    Returns:
        One :class:`StepWork` per step, in order.
    """
    size = float(max(parameters, 1))
    speed = 1.0  # forward cost per parameter: < 1 once int8
    n_layers = max(layers, 1)
    out: list[StepWork] = []

    def trained(
        epochs: float, batch_size: int, max_steps: int | None, model: float, copies: int = 0
    ) -> float:
        rows = epochs * train_rows * (1 + copies)
        if max_steps:
            rows = min(rows, max_steps * batch_size)
        evals = max(1, math.ceil(epochs)) * eval_rows
        return model * (TRAIN_PASS * rows + evals)

    for step in steps:
        units, fixed = 0.0, 0.0
        forward = size * speed
        if isinstance(step, FineTune):
            units = trained(step.epochs, step.batch_size, step.max_steps, size)
            units += size * SAVE_ROWS
        elif isinstance(step, Distill):
            kept = len(step.student_layers or default_student_layers(n_layers))
            student = size * kept / n_layers
            # The teacher's logits are cached in one pass over the rows (augmented copies
            # included), and each copy is one more pass of training. A hidden-state or
            # attention loss needs the teacher's inner states, which are not cached: the
            # teacher then runs on every batch of every epoch.
            rows = train_rows * (1 + step.augment)
            states = step.hidden_mse > 0 or step.attention_mse > 0
            teacher_passes = max(step.epochs, 1.0) if states else 1.0
            units = forward * rows * teacher_passes + trained(
                step.epochs, step.batch_size, None, student, copies=step.augment
            )
            units += student * (eval_rows + SAVE_ROWS)
            size, n_layers = student, kept
        elif isinstance(step, Prune) and step.method == "vocabulary":
            # Tokenizing the training texts to count ids, then the accuracy it reports.
            units = forward * (0.1 * train_rows + eval_rows) + size * SAVE_ROWS
        elif isinstance(step, Prune):
            before = size
            if step.method == "heads":
                size *= 1 - step.amount / 3  # attention is about a third of a layer
            elif step.method == "ffn":
                size *= 1 - 2 * step.amount / 3
            elif step.method == "layers" and step.keep_layers:
                size *= len(step.keep_layers) / n_layers
                n_layers = len(step.keep_layers)
            if step.method in ("heads", "ffn"):  # gradient importance on up to 32 batches
                units += before * TRAIN_PASS * min(train_rows, 32 * step.batch_size)
            if step.recovery_epochs > 0:
                units += trained(step.recovery_epochs, step.batch_size, None, size)
            units += size * (eval_rows + SAVE_ROWS)  # the accuracy it reports, the save
        elif isinstance(step, Quantize):
            # The float reference, then the quantized model's accuracy (the guard's).
            units = forward * eval_rows + size * SAVE_ROWS
            if step.backend == "onnxruntime":
                speed = ORT_INT8_SPEED
                units += size * EXPORT_ROWS
            elif step.method == "dynamic_int8":
                speed = INT8_SPEED
            units += size * speed * eval_rows
        elif isinstance(step, DistillStatic):
            # Every token through the model once (about STATIC_TOKEN_ROWS rows' worth),
            # the teacher's logits over the train rows, then a model of lookups.
            units = forward * (STATIC_TOKEN_ROWS + (train_rows if step.alpha_kd > 0 else 0))
            size = max(size * STATIC_SHARE, 1.0)
            units += trained(step.epochs, step.batch_size, None, size) + size * SAVE_ROWS
            n_layers = 1
        elif isinstance(step, Export):
            units = forward * 2 * eval_rows + size * EXPORT_ROWS
            if speed != 1.0:  # an int8 model now runs in onnxruntime
                speed = ORT_INT8_SPEED
        elif isinstance(step, Evaluate):
            units = forward * (test_rows if step.split == "test" else eval_rows)
        elif isinstance(step, Sensitivity):
            rows = min(step.rows, test_rows if step.split == "test" else eval_rows)
            # One pass over the sample per ablation: layers, heads (about 12 per layer in
            # BERT-like encoders), FFN blocks and linears (6 per layer), and the baseline.
            passes = 1 + n_layers * (step.layers + 12 * step.heads + step.ffn + 6 * step.linears)
            units = forward * rows * passes
        elif step.step_type == "search":
            # Runs until its wall-clock budget ends (or its trials do): a fixed time.
            units, fixed = forward * eval_rows, float(step.time_budget_s)
        elif isinstance(step, Benchmark):
            if step.repeats == "auto":
                fixed = BENCH_BUDGET_S
                units = forward * (step.warmup + step.sentences) * 2
            else:
                # Batch-1 calls use the CPU less well than batched ones.
                units = forward * (step.warmup + step.sentences * int(step.repeats)) * 4
        out.append(StepWork(units, fixed))
    return out
