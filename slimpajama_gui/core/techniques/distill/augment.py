"""More varied training text for distillation: copies of the rows with words swapped.

A student distilled on one task's sentences only learns to imitate the teacher on that
kind of text, and loses more than the teacher on other text (docs/benchmarks.md,
ood-check). Copies of the training rows in which some whole words are replaced by
their nearest neighbours in the teacher's own word-embedding table show the student
sentences the teacher can still read but the task's data never holds; the copies learn
from the teacher's logits (their hard label is the teacher's argmax), so no label is
invented. This is the word-replacement half of TinyBERT's data augmentation (Jiao et
al. 2020, "TinyBERT", §3.2; they take neighbours from GloVe and BERT's masked-LM, we
from the teacher's input embeddings, which every encoder has).

Everything works on token ids, so the copies keep the rows' lengths, token types and
truncation. A token is swapped only when it is a whole word: it starts a word, is
alphabetic, is at least two letters long and the next token does not continue it
(WordPiece ``##`` pieces, or SentencePiece/BPE tokens without the word-start marker).

Example:
    >>> words = whole_word_ids(tokenizer)  # doctest: +SKIP
    >>> table = neighbour_table(model.get_input_embeddings().weight, words, ids_in_use, k=8)  # doctest: +SKIP
    >>> extra = augment_rows(encoded.input_ids, table, continues, rate=0.3, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["augment_rows", "neighbour_table", "whole_word_ids"]

#: Markers that SentencePiece (``▁``) and byte-level BPE (``Ġ``) put on a word's first piece.
WORD_START_MARKERS = ("\u2581", "\u0120")


def whole_word_ids(tokenizer: Any) -> tuple[list[int], set[int]]:
    """The ids that can be swapped, and the ids that continue the previous token's word.

    Returns:
        ``(words, continues)``: ``words`` are the ids of tokens that start a word and are
        alphabetic with at least two letters (no special tokens, no digits or
        punctuation); ``continues`` are the ids of word pieces that never start a word
        (WordPiece ``##x``; with a marker scheme, tokens without the marker).

    Raises:
        ValueError: the vocabulary follows neither WordPiece nor a word-start marker, so
            a whole word cannot be told from a piece.
    """
    vocab: Mapping[str, int] = tokenizer.get_vocab()
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    tokens = [(t, i) for t, i in vocab.items() if i not in special]
    pieces = sum(t.startswith("##") for t, _ in tokens)
    marked = sum(t.startswith(WORD_START_MARKERS) for t, _ in tokens)
    words: list[int] = []
    continues: set[int] = set()
    if pieces >= max(1, len(tokens) // 20):  # WordPiece: "##" marks a continuation
        for token, i in tokens:
            if token.startswith("##"):
                continues.add(i)
            elif len(token) >= 2 and token.isalpha():
                words.append(i)
    elif marked >= max(1, len(tokens) // 5):  # SentencePiece / byte-level BPE
        for token, i in tokens:
            if token.startswith(WORD_START_MARKERS):
                body = token[1:]
                if len(body) >= 2 and body.isalpha():
                    words.append(i)
            else:
                continues.add(i)
    else:
        raise ValueError(
            "the tokenizer marks neither word pieces ('##') nor word starts ('▁', 'Ġ')"
        )
    return sorted(words), continues


def neighbour_table(
    embeddings: torch.Tensor,
    words: Sequence[int],
    wanted: Iterable[int],
    k: int = 8,
    chunk: int = 1024,
) -> dict[int, list[int]]:
    """For each id of ``wanted`` that is in ``words``: its ``k`` nearest other words.

    Nearness is the cosine similarity of rows of ``embeddings`` (the teacher's input
    word-embedding table, shape ``(vocab, hidden)``); candidates are ``words`` only.
    Computed ``chunk`` ids at a time, so memory stays at ``chunk * len(words)`` floats.

    Returns:
        ``{id: [neighbour ids, nearest first]}``; ids not in ``words`` are left out.
    """
    if not words:
        return {}
    candidates = torch.as_tensor(list(words), dtype=torch.long)
    table = torch.nn.functional.normalize(embeddings.detach().float()[candidates], dim=1)
    position = {int(w): n for n, w in enumerate(candidates.tolist())}
    ids = sorted({int(i) for i in wanted if int(i) in position})
    k = min(k, len(words) - 1)
    out: dict[int, list[int]] = {}
    if k <= 0:
        return out
    with torch.no_grad():
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            rows = torch.as_tensor([position[i] for i in part])
            sims = table[rows] @ table.T  # (chunk, len(words))
            sims[torch.arange(len(part)), rows] = -2.0  # never a word's own neighbour
            top = sims.topk(k, dim=1).indices  # (chunk, k)
            for i, near in zip(part, candidates[top].tolist(), strict=True):
                out[i] = near
    return out


def augment_rows(
    input_ids: Sequence[Sequence[int]],
    neighbours: Mapping[int, Sequence[int]],
    continues: Collection[int],
    *,
    rate: float = 0.3,
    copies: int = 1,
    seed: int = 0,
) -> list[list[int]]:
    """``copies`` altered copies of every row, in order (all rows' first copy, then the
    second...), each whole word swapped with probability ``rate`` for one of its
    ``neighbours`` chosen uniformly.

    Only tokens with neighbours are swapped, and only when the next token is not in
    ``continues`` (it would make the swapped word part of a longer one). The same
    ``seed`` gives the same copies.

    Args:
        input_ids: token ids per row, special tokens included.
        rate: chance that a swappable word is swapped, in [0, 1].

    Returns:
        ``len(input_ids) * copies`` rows of ids, each as long as its original.
    """
    rng = random.Random(seed)
    out: list[list[int]] = []
    for _ in range(copies):
        for ids in input_ids:
            row = list(ids)
            for n, token in enumerate(row):
                near = neighbours.get(token)
                if not near or rng.random() >= rate:
                    continue
                if n + 1 < len(row) and row[n + 1] in continues:
                    continue
                row[n] = near[rng.randrange(len(near))]
            out.append(row)
    return out
