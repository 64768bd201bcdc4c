"""The shape of a BERT-style encoder as arithmetic: no weights, no torch.

Both the job plan (the size estimate the wizard draws on the GUI thread) and the
techniques (distillation picks its student's layers) need these sums; they live here,
below both, so neither imports the other and the GUI thread never imports torch.

A BERT layer has ``4·H·A + 3·A + H`` attention, ``2·H·F + F + H`` FFN and ``4·H``
LayerNorm parameters, where H is the hidden size, A the attention width (heads × head
size) and F the FFN width.
"""

from __future__ import annotations

from slimpajama_gui.core.model.inspection import ModelInfo


def default_student_layers(num_layers: int) -> list[int]:
    """Every second teacher layer, counting from 1: ``[1, 3, 5]`` for 6 layers.

    Keeping the odd layers (not the even ones) keeps the teacher's last layer when the
    depth is even, so the classifier still reads the representation it was trained on.
    A 1-layer teacher gives ``[0]``; 0 layers give ``[]``.
    """
    return list(range(1, num_layers, 2)) or list(range(min(num_layers, 1)))


def layer_heads(info: ModelInfo) -> list[int]:
    """Attention heads of each of ``info.layers`` layers (pruned models differ per layer)."""
    return [
        info.layer_heads[i] if i < len(info.layer_heads) else info.heads for i in range(info.layers)
    ]


def layer_ffn(info: ModelInfo) -> list[int]:
    """FFN width of each layer; ``4 × hidden`` where the header does not say."""
    return [
        info.layer_ffn[i] if i < len(info.layer_ffn) else 4 * info.hidden
        for i in range(info.layers)
    ]


def attention_width(info: ModelInfo, layer: int) -> int:
    """Heads × head size of one layer, solved from its parameter count (exact for BERT).

    Falls back to ``heads × hidden / heads-of-the-config`` when the count is unknown or
    does not solve to a whole multiple of the layer's heads.
    """
    hidden = info.hidden
    heads = info.layer_heads[layer] if layer < len(info.layer_heads) else info.heads
    ffn = info.layer_ffn[layer] if layer < len(info.layer_ffn) else 4 * hidden
    fallback = heads * (hidden // max(info.heads, 1))
    if layer >= len(info.layer_params):
        return fallback
    width = (info.layer_params[layer] - 2 * hidden * ffn - ffn - 6 * hidden) / (4 * hidden + 3)
    if width > 0 and width.is_integer() and heads and int(width) % heads == 0:
        return int(width)
    return fallback


def layer_parameters(hidden: int, heads: int, head_dim: float, ffn: int) -> tuple[float, float]:
    """(all parameters, linear-layer weights) of one encoder layer of this shape.

    ``head_dim`` may be fractional (an averaged head size); the result is then too.
    """
    width = heads * head_dim
    linear = 4 * hidden * width + 2 * hidden * ffn
    return linear + 3 * width + hidden + ffn + hidden + 4 * hidden, linear
