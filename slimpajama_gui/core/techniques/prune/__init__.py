"""Pruning that really shrinks or speeds up an :class:`EncoderClassifier` — and says when not.

Four techniques, from "smaller file only" to "smaller and faster", one module each:

* :mod:`.magnitude` — unstructured magnitude pruning (one-shot, or the gradual cubic
  schedule during recovery training): zeros in the encoder linears; the file keeps its
  size and dense kernels their speed, only a zipped copy shrinks.
* :mod:`.structured` — attention heads and FFN neurons scored by a gradient on a mask
  (Michel et al. 2019) and physically removed: a new, smaller model.
* :mod:`.layers` — layer dropping: a new model with some encoder layers.
* :mod:`.vocabulary` — the word-embedding rows the data uses, with a re-numbered tokenizer.

Which functions change the model you pass and which return a new one:

===============================  =========================================================
:func:`magnitude_prune`          in place (adds masks); unchanged if it raises
:class:`GradualMagnitudePruner`  in place, during training (adds masks when built)
:func:`make_permanent`           in place (removes masks, keeps the zeros)
:func:`structure_importance`     reads only (gradients go to temporary masks, not .grad)
:func:`prune_structure`          returns a new model; the original is untouched
:func:`drop_layers`              returns a new model; the original is untouched
:func:`prune_vocabulary`         returns a new model; the original is untouched
===============================  =========================================================

Measured on the packaged MiniLM-L6 (one run, a busy 2-core CPU, 1 thread): magnitude
pruning of the encoder linears leaves the 90.9 MB safetensors file at 90.9 MB and the
latency unchanged; deflated (zip) the file goes from 83.2 MB to 67.6 MB at 50 % and
51.8 MB at 90 % (the 11.7 M-parameter embedding is not pruned). Removing 50 % of the
heads and FFN neurons takes the encoder from 10.65 M to 5.33 M parameters and the batch-1
p50 latency down about 1.6-1.7x.

The public names of the four modules are gathered here (``prune.magnitude_prune``, …).
"""

from slimpajama_gui.core.techniques.prune.layers import Scope, drop_layers
from slimpajama_gui.core.techniques.prune.magnitude import (
    ENCODER_LINEARS,
    HEAD_LINEARS,
    UNSTRUCTURED_NOTE,
    GradualMagnitudePruner,
    SparsityReport,
    cubic_sparsity,
    magnitude_prune,
    make_permanent,
    prunable_linears,
    safetensors_sizes,
    sparsity_report,
)
from slimpajama_gui.core.techniques.prune.structured import (
    Importance,
    LossFn,
    StructureMasks,
    masked_structure,
    prune_structure,
    select_structure,
    structure_importance,
)
from slimpajama_gui.core.techniques.prune.vocabulary import VocabReport, prune_vocabulary

__all__ = [
    "ENCODER_LINEARS",
    "HEAD_LINEARS",
    "UNSTRUCTURED_NOTE",
    "GradualMagnitudePruner",
    "Importance",
    "LossFn",
    "Scope",
    "SparsityReport",
    "StructureMasks",
    "VocabReport",
    "cubic_sparsity",
    "drop_layers",
    "magnitude_prune",
    "make_permanent",
    "masked_structure",
    "prunable_linears",
    "prune_structure",
    "prune_vocabulary",
    "safetensors_sizes",
    "select_structure",
    "sparsity_report",
    "structure_importance",
]
