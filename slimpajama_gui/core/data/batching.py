"""Token ids and padded batches: from a split's texts to the tensors a model reads.

:func:`encode` tokenizes texts (and second texts) once, unpadded, counting truncations
(D5 of docs/reliability.md); :func:`batches` pads them batch by batch (:func:`collate`)
in an order that depends only on the seed, and :func:`restore_order` puts per-batch
outputs back in row order. torch is imported only inside the functions that make tensors.

Example:
    >>> tok = AutoTokenizer.from_pretrained(path, local_files_only=True)  # doctest: +SKIP
    >>> enc = encode_split(ds.train, tok, spec.max_length)  # doctest: +SKIP
    >>> for batch in batches(enc, ds.train.labels, 32, True, 0, tok.pad_token_id):  # doctest: +SKIP
    ...     logits = model(batch["input_ids"], batch["attention_mask"])
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from slimpajama_gui.core.data.dataset import Split

__all__ = [
    "CHARS_PER_TOKEN",
    "Encoded",
    "batches",
    "collate",
    "encode",
    "encode_split",
    "restore_order",
]

#: Before tokenizing, a text is cut to ``max_length * CHARS_PER_TOKEN`` characters, so a
#: 1 MB text costs no more than a page (no tokenizer makes a token of over 20 characters
#: before truncation matters). A cut text always counts as truncated.
CHARS_PER_TOKEN = 20


@dataclass
class Encoded:
    """Token ids of one split, unpadded; ``warnings`` holds the D5 sentence if any."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    max_length: int
    truncated_count: int = 0
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


def encode(
    texts: Sequence[str],
    tokenizer: Any,
    max_length: int,
    pairs: Sequence[str] | None = None,
    *,
    truncate: bool = True,
) -> Encoded:
    """Tokenize ``texts`` (and ``pairs``) with special tokens, truncated to ``max_length``.

    A text longer than ``max_length`` tokens is truncated and counted (D5). Texts are first
    cut to ``max_length * CHARS_PER_TOKEN`` characters so a 1 MB text takes milliseconds.

    Args:
        truncate: False keeps every token of the (character-cut) texts: what the
            tokenizer sees before truncation decides which tokens the model reads.
            ``truncated_count`` then counts only the character cuts.
    """
    texts = list(texts)
    if pairs is not None:
        pairs = list(pairs)
        if len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
    if not texts:
        return Encoded([], None, max_length)
    limit = max_length * CHARS_PER_TOKEN
    cut = [len(t) > limit for t in texts]
    texts = [t[:limit] if c else t for t, c in zip(texts, cut, strict=True)]
    if pairs is not None:
        pair_cut = [len(p) > limit for p in pairs]
        pairs = [p[:limit] if c else p for p, c in zip(pairs, pair_cut, strict=True)]
        cut = [a or b for a, b in zip(cut, pair_cut, strict=True)]

    def run(idx: Sequence[int] | None, length: int | None) -> Any:
        a = texts if idx is None else [texts[i] for i in idx]
        b = None if pairs is None else pairs if idx is None else [pairs[i] for i in idx]
        return tokenizer(
            a,
            b,
            truncation=length is not None,
            max_length=length,
            padding=False,
            return_attention_mask=False,
            # Untruncated ids are counted, never fed to the model: no "too long" warning.
            verbose=length is not None,
        )

    if not truncate:
        whole = run(None, None)
        type_ids = whole.get("token_type_ids")
        return Encoded(
            [list(ids) for ids in whole["input_ids"]],
            None if type_ids is None else [list(t) for t in type_ids],
            max_length,
            sum(cut),
        )

    # One token of headroom tells a text that fits exactly from one that was cut; only
    # the few long ones are tokenized a second time at the real limit.
    out = run(None, max_length + 1)
    input_ids = [list(ids) for ids in out["input_ids"]]
    type_ids = out.get("token_type_ids")
    token_type_ids = None if type_ids is None else [list(t) for t in type_ids]
    long = [i for i, ids in enumerate(input_ids) if len(ids) > max_length]
    if long:
        again = run(long, max_length)
        for j, i in enumerate(long):
            input_ids[i] = list(again["input_ids"][j])
            if token_type_ids is not None:
                token_type_ids[i] = list(again["token_type_ids"][j])
    truncated = set(long) | {i for i, c in enumerate(cut) if c}
    enc = Encoded(input_ids, token_type_ids, max_length, len(truncated))
    if truncated:
        n = len(truncated)
        enc.warnings.append(
            f"{n} text{'s were' if n > 1 else ' was'} longer than max_length={max_length} "
            "tokens and " + ("were" if n > 1 else "was") + " truncated."
        )
    return enc


def encode_split(split: Split, tokenizer: Any, max_length: int) -> Encoded:
    """:func:`encode` for a :class:`Split`, naming the split in the warning."""
    enc = encode(split.texts, tokenizer, max_length, split.pairs)
    enc.warnings = [f"{split.name}: {w}" for w in enc.warnings]
    return enc


def collate(batch: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Pad a list of examples to the longest one.

    Each example is a mapping with ``input_ids`` (list of ints), and optionally
    ``token_type_ids`` and ``label``. Returns int64 tensors ``input_ids``,
    ``attention_mask`` (1 on real tokens) and ``token_type_ids``, all (B, T), and
    ``labels`` (B,) when the examples carry labels.
    """
    import torch

    if not batch:
        raise ValueError("cannot collate an empty batch")
    width = max(len(ex["input_ids"]) for ex in batch)
    n = len(batch)
    input_ids = torch.full((n, width), int(pad_id), dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.long)
    for row, ex in enumerate(batch):
        ids = ex["input_ids"]
        length = len(ids)
        if length:
            input_ids[row, :length] = torch.as_tensor(ids, dtype=torch.long)
            attention[row, :length] = 1
            tt = ex.get("token_type_ids")
            if tt is not None:
                types[row, :length] = torch.as_tensor(tt, dtype=torch.long)
    out = {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": types}
    if any(ex.get("label") is not None for ex in batch):
        out["labels"] = torch.tensor([int(ex["label"]) for ex in batch], dtype=torch.long)
    return out


def batches(
    encoded: Encoded,
    labels: Sequence[int] | None,
    batch_size: int,
    shuffle: bool,
    seed: int,
    pad_id: int,
    *,
    sort_by_length: bool = False,
    drop_last: bool = False,
) -> Iterator[dict[str, Any]]:
    """Padded batches of ``encoded`` (see :func:`collate`), each with an ``index`` tensor.

    The order depends only on ``seed`` (pass ``seed + epoch`` for a new order each epoch).
    ``sort_by_length`` groups texts of similar length so evaluation pads less; with
    ``shuffle`` it sorts within chunks of 50 batches and shuffles the batches. ``index``
    holds each row's position in ``encoded``, so :func:`restore_order` puts outputs back.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    n = len(encoded)
    if labels is not None and len(labels) != n:
        raise ValueError(f"{n} encoded texts but {len(labels)} labels")
    order = list(range(n))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    if sort_by_length:
        lengths = encoded.lengths()
        if shuffle:
            chunk = batch_size * 50
            order = [
                i
                for s in range(0, n, chunk)
                for i in sorted(order[s : s + chunk], key=lambda i: lengths[i])
            ]
        else:
            order.sort(key=lambda i: lengths[i])
    groups = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    if drop_last and groups and len(groups[-1]) < batch_size:
        groups.pop()
    if shuffle and sort_by_length:
        rng.shuffle(groups)
    for group in groups:
        examples = []
        for i in group:
            ex: dict[str, Any] = {"input_ids": encoded.input_ids[i]}
            if encoded.token_type_ids is not None:
                ex["token_type_ids"] = encoded.token_type_ids[i]
            if labels is not None:
                ex["label"] = labels[i]
            examples.append(ex)
        out = collate(examples, pad_id)
        out["index"] = torch.tensor(group, dtype=torch.long)
        yield out


def restore_order(values: Sequence[Any], indices: Sequence[Any]) -> Any:
    """Undo batch order: concatenate per-batch ``values`` and place row ``index[k]`` at k.

    ``values`` and ``indices`` are lists of per-batch tensors (as yielded in ``index``).
    """
    import torch

    flat = torch.cat([torch.as_tensor(v) for v in values])
    idx = torch.cat([torch.as_tensor(i) for i in indices])
    out = torch.empty_like(flat)
    out[idx] = flat
    return out
