"""Token vectors from a sentence encoder, by Model2Vec's recipe (the ``model2vec`` package).

Every token of the vocabulary goes through the encoder once, between the tokenizer's
special tokens (``[CLS] token [SEP]``); the mean of its output states is its vector.
PCA then reduces the vectors to ``dims`` components and SIF weights (Zipf's law over
the token ids) damp frequent tokens: :func:`model2vec.distill.inference.create_embeddings`,
``apply_pca`` and ``compute_weights``, as ``model2vec.distill`` runs them.

What differs from ``model2vec.distill``: the encoder is our own model (the current
model of the chain, pruned or not; Model2Vec needs a ``transformers`` one), and the
tokenizer and its ids are kept unchanged (Model2Vec rebuilds the tokenizer without the
``[unusedN]`` tokens), so the variant carries the teacher's tokenizer files as every
other variant does. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from slimpajama_gui.core.errors import UserError

log = logging.getLogger(__name__)

#: Tokens per call of Model2Vec's encoder pass: between two, a stop is honoured and
#: progress reported.
CHUNK = 2048


class _LastHidden(nn.Module):
    """Our encoder behind the ``model(...).last_hidden_state`` call Model2Vec makes."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self._segments = getattr(encoder.config, "type_vocab_size", 0) > 0

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids if self._segments else None,
            output_hidden_states=True,
        )
        return SimpleNamespace(last_hidden_state=out.hidden_states[-1], pooler_output=None)


def special_ids(tokenizer) -> tuple[list[int], list[int]]:
    """(prefix, suffix): the special token ids the tokenizer puts around one text."""
    marker = -12345
    build = getattr(tokenizer, "build_inputs_with_special_tokens", None)
    if build is not None:
        try:
            ids = list(build([marker]))
            at = ids.index(marker)
            return ids[:at], ids[at + 1 :]
        except (ValueError, TypeError, NotImplementedError):
            pass
    empty = list(tokenizer("")["input_ids"])
    return empty[:1], empty[1:]


def skip_token_ids(tokenizer) -> list[int]:
    """Ids a sentence's mean leaves out: the special tokens around it and padding."""
    prefix, suffix = special_ids(tokenizer)
    ids = {*prefix, *suffix}
    if tokenizer.pad_token_id is not None:
        ids.add(int(tokenizer.pad_token_id))
    return sorted(int(i) for i in ids)


@contextlib.contextmanager
def _quiet_progress_bars():
    """Model2Vec's encoder pass draws a tqdm bar; the job reports its own progress."""
    from model2vec.distill import inference

    original = inference.tqdm
    inference.tqdm = functools.partial(original, disable=True)
    try:
        yield inference
    finally:
        inference.tqdm = original


def token_vectors(
    encoder: nn.Module,
    tokenizer,
    *,
    dims: int,
    sif_coefficient: float | None = 1e-4,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[int, int], None] | None = None,
) -> np.ndarray | None:
    """Model2Vec's static vectors of every token id of ``encoder``'s vocabulary.

    Args:
        encoder: an :class:`~slimpajama_gui.core.model.encoder.EncoderClassifier` (its
            last hidden states are used; its head is not).
        tokenizer: its tokenizer (for the special tokens around each token).
        dims: PCA components kept, at most the encoder's hidden size.
        sif_coefficient: Model2Vec's SIF weighting (None: none).
        should_stop: polled between chunks; True returns None.
        on_progress: ``(tokens done, tokens)``.

    Returns:
        (V, dims) float32, V = the encoder's ``vocab_size``; None when stopped.

    Raises:
        UserError: ``dims`` is above the hidden size or the vocabulary is smaller.
    """
    vocab, hidden = encoder.config.vocab_size, encoder.config.hidden_size
    if dims > hidden or dims >= vocab:
        raise UserError(
            f"distill_static.dims is {dims} but the model has {hidden} hidden units and "
            f"{vocab} tokens; choose at most {min(hidden, vocab - 1)} dimensions."
        )
    prefix, suffix = special_ids(tokenizer)
    pad = tokenizer.pad_token_id or 0
    sequences = [[*prefix, i, *suffix] for i in range(vocab)]
    device = str(next(encoder.parameters()).device)
    adapter = _LastHidden(encoder)
    was_training = encoder.training
    parts: list[np.ndarray] = []
    try:
        with _quiet_progress_bars() as inference:
            for start in range(0, vocab, CHUNK):
                if should_stop():
                    return None
                chunk = sequences[start : start + CHUNK]
                parts.append(inference.create_embeddings(adapter, chunk, device, pad, "mean"))
                if on_progress is not None:
                    on_progress(min(start + CHUNK, vocab), vocab)
            vectors = np.concatenate(parts).astype(np.float32)
            weights = inference.compute_weights(vocab, sif_coefficient=sif_coefficient)
            vectors = inference.apply_pca(vectors, dims) * weights[:, None]
    finally:
        encoder.train(was_training)
    return np.ascontiguousarray(vectors, dtype=np.float32)
