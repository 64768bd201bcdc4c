"""Vocabulary pruning: keep the word-embedding rows the data uses, re-number the tokenizer.

:func:`prune_vocabulary` returns a new :class:`SlimPajamaModel` whose word embedding has
only the rows of the token ids the training texts use (plus special tokens), and writes
a re-numbered WordPiece tokenizer to match. Measured on the packaged MiniLM-L6: keeping
the vocabulary SST-2's training sentences use leaves 11,575 of 30,522 embedding rows
(22.7 M -> 15.4 M parameters).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.prune import _check_slim, _new_model, _plain_state_dict, _take
from slimpajama_gui.core.safe_io import atomic_write_text
from slimpajama_gui.core.transformer import TOKENIZER_FILES, SlimPajamaModel


@dataclass
class VocabReport:
    """What vocabulary pruning kept.

    Attributes:
        kept: ids kept (rows of the new embedding).
        original: ids before (rows of the old embedding).
        unk_rate_on_texts: share of the tokens of ``texts`` (special tokens not
            counted) that are [UNK]; the same before and after, since every piece
            they use is kept.
        unk_rate_on_eval: the same for ``eval_texts`` with the new tokenizer (words
            whose pieces were dropped become other kept pieces or [UNK]); None
            without ``eval_texts``.
        changed_on_eval: share of ``eval_texts`` whose token sequence changed.
        kept_ids: the original ids kept, in new-id order (new id = position).
    """

    kept: int
    original: int
    unk_rate_on_texts: float
    unk_rate_on_eval: float | None = None
    changed_on_eval: float | None = None
    kept_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def id_map(self) -> torch.Tensor:
        """(original,) tensor: old id -> new id, -1 for dropped ids."""
        m = torch.full((self.original,), -1, dtype=torch.long)
        m[torch.tensor(self.kept_ids, dtype=torch.long)] = torch.arange(len(self.kept_ids))
        return m

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("kept_ids")
        return data


def _load_tokenizer(folder: Path):
    from slimpajama_gui.core.models import load_tokenizer

    return load_tokenizer(folder)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}.") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object.")
    return data


def _tokenizer_vocab(folder: Path) -> tuple[dict[str, int], dict[str, Any] | None]:
    """token -> id of a WordPiece tokenizer folder, and its parsed tokenizer.json (or None)."""
    tj = folder / "tokenizer.json"
    if tj.is_file():
        data = _read_json(tj)
        model = data.get("model") or {}
        if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
            raise UserError(
                f"{tj} holds a {model.get('type', 'unknown')} tokenizer; vocabulary pruning "
                "supports WordPiece (BERT-family) tokenizers only, since re-numbering a "
                "BPE or Unigram vocabulary breaks its merge rules."
            )
        vocab = dict(model["vocab"])
        for tok in data.get("added_tokens") or []:
            vocab.setdefault(tok["content"], int(tok["id"]))
        return vocab, data
    vt = folder / "vocab.txt"
    if vt.is_file():
        lines = vt.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return {tok: i for i, tok in enumerate(lines)}, None
    raise UserError(
        f"{folder} has neither tokenizer.json nor vocab.txt; vocabulary pruning needs a "
        "WordPiece (BERT-family) tokenizer."
    )


def _remap_post_processor(proc: dict[str, Any] | None, id_map: dict[int, int]) -> None:
    if not proc:
        return
    kind = proc.get("type")
    if kind == "TemplateProcessing":
        for spec in (proc.get("special_tokens") or {}).values():
            spec["ids"] = [id_map[int(i)] for i in spec.get("ids", [])]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            if key in proc:
                token, old = proc[key]
                proc[key] = [token, id_map[int(old)]]
    elif kind == "Sequence":
        for sub in proc.get("processors") or []:
            _remap_post_processor(sub, id_map)


def write_remapped_tokenizer(src: Path, dst: Path, kept_ids: Sequence[int]) -> list[str]:
    """Write the tokenizer of ``src`` into ``dst`` with only ``kept_ids``, renumbered.

    New id = position in ``kept_ids`` (so ``kept_ids`` must be increasing: the order of
    tokens is kept). Rewrites ``tokenizer.json`` (WordPiece vocab, added tokens,
    post-processor and padding ids), ``vocab.txt`` and the ids in
    ``tokenizer_config.json``'s ``added_tokens_decoder``; copies the other tokenizer
    files. Each file is written atomically; ``dst`` may already hold other files (a
    model being staged), but never be ``src``.

    Returns:
        The names of the files written.

    Raises:
        UserError: not a WordPiece tokenizer, a special token is missing from
            ``kept_ids``, or ``dst`` is ``src``.
    """
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise UserError(
            f"the pruned tokenizer would overwrite the source tokenizer in {src}; choose "
            "another output folder."
        )
    kept_ids = [int(i) for i in kept_ids]
    if any(b <= a for a, b in zip(kept_ids, kept_ids[1:], strict=False)):
        raise ValueError("kept_ids must be strictly increasing")
    vocab, data = _tokenizer_vocab(src)
    by_id = {i: t for t, i in vocab.items()}
    missing = [i for i in kept_ids if i not in by_id]
    if missing:
        raise UserError(
            f"id {missing[0]} is kept but the tokenizer in {src} has no token for it "
            f"(it has {len(by_id)} ids); the tokenizer and the model do not belong together."
        )
    id_map = {old: new for new, old in enumerate(kept_ids)}
    written: list[str] = []
    dst.mkdir(parents=True, exist_ok=True)
    if data is not None:
        specials = [t for t in data.get("added_tokens") or [] if int(t["id"]) not in id_map]
        if specials:
            raise UserError(
                f"the special token {specials[0]['content']!r} of {src} would be dropped; "
                "special tokens must be kept."
            )
        data = copy.deepcopy(data)
        model_vocab = data["model"]["vocab"]
        data["model"]["vocab"] = {
            by_id[old]: new for old, new in id_map.items() if by_id[old] in model_vocab
        }
        for tok in data.get("added_tokens") or []:
            tok["id"] = id_map[int(tok["id"])]
        try:
            _remap_post_processor(data.get("post_processor"), id_map)
        except KeyError as exc:
            raise UserError(
                f"the post-processor of {src / 'tokenizer.json'} uses id {exc.args[0]}, which "
                "is not kept; special tokens must be kept."
            ) from None
        padding = data.get("padding")
        if isinstance(padding, dict) and "pad_id" in padding:
            padding["pad_id"] = id_map.get(int(padding["pad_id"]), 0)
        atomic_write_text(dst / "tokenizer.json", json.dumps(data, ensure_ascii=False, indent=2))
        written.append("tokenizer.json")
    if (src / "vocab.txt").is_file() or data is not None:
        lines = [by_id[old] for old in kept_ids]
        atomic_write_text(dst / "vocab.txt", "\n".join(lines) + "\n")
        written.append("vocab.txt")
    tc = src / "tokenizer_config.json"
    if tc.is_file():
        cfg = _read_json(tc)
        decoder = cfg.get("added_tokens_decoder")
        if isinstance(decoder, dict):
            cfg["added_tokens_decoder"] = {
                str(id_map[int(k)]): v for k, v in decoder.items() if int(k) in id_map
            }
        atomic_write_text(dst / "tokenizer_config.json", json.dumps(cfg, indent=2) + "\n")
        written.append("tokenizer_config.json")
    for name in TOKENIZER_FILES:
        if name not in written and (src / name).is_file():
            if name == "added_tokens.json":
                added = _read_json(src / name)
                text = json.dumps({k: id_map[int(v)] for k, v in added.items() if int(v) in id_map})
            else:
                text = (src / name).read_text(encoding="utf-8")
            atomic_write_text(dst / name, text)
            written.append(name)
    return written


def _count_ids(tokenizer, texts: Iterable[str], chunk: int = 2048) -> tuple[Counter, int]:
    counts: Counter = Counter()
    n_texts = 0
    buf: list[str] = []

    def flush() -> None:
        for ids in tokenizer(buf, add_special_tokens=True)["input_ids"]:
            counts.update(ids)

    for text in texts:
        buf.append(text)
        n_texts += 1
        if len(buf) >= chunk:
            flush()
            buf.clear()
    if buf:
        flush()
    return counts, n_texts


def _unk_rate(tokenizer, counts: Counter) -> float:
    specials = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    total = sum(c for i, c in counts.items() if i not in specials)
    return counts.get(tokenizer.unk_token_id, 0) / total if total else 0.0


def prune_vocabulary(
    model: SlimPajamaModel,
    tokenizer_folder: Path,
    texts: Iterable[str],
    out_tokenizer_folder: Path,
    *,
    extra_ids: Iterable[int] = (),
    eval_texts: Sequence[str] | None = None,
) -> tuple[SlimPajamaModel, VocabReport]:
    """A NEW model whose word embedding has only the rows ``texts`` use, plus a tokenizer.

    Keeps every id the tokenizer produces on ``texts`` (the training data), every
    special/added token, the model's pad id and ``extra_ids``; tokens keep their order
    and are numbered 0, 1, ... . A matching WordPiece tokenizer is written to
    ``out_tokenizer_folder``. On the texts the new pair gives the same logits as the old
    pair: WordPiece matches the longest known piece first, and every piece those texts
    used is still known. A word never seen falls back to kept sub-pieces, or [UNK].

    ``extra_ids`` is how to keep more than the data shows (there is no frequency list
    beyond ``texts``): e.g. the ids of a second dataset, or ``range(1000, 2000)`` to
    keep the most common whole words of a BERT vocabulary, which come first.

    Args:
        model: read only.
        tokenizer_folder: the model's tokenizer (``tokenizer.json`` and/or ``vocab.txt``).
        texts: the training texts (any iterable; read once).
        out_tokenizer_folder: where the re-numbered tokenizer files go (created if
            needed; other files there are left alone; never ``tokenizer_folder``).
        extra_ids: original ids to keep as well.
        eval_texts: held-out texts on which to measure the new tokenizer's [UNK] rate.

    Returns:
        The new model (``vocab_size`` and ``pad_token_id`` updated) and a
        :class:`VocabReport`. Training data already encoded with the old tokenizer
        must be encoded again (or mapped with ``report.id_map``).

    Raises:
        UserError: the tokenizer is not WordPiece, does not fit the model, or an
            extra id is out of range.
    """
    _check_slim(model)
    tokenizer_folder, out = Path(tokenizer_folder), Path(out_tokenizer_folder)
    cfg = model.config
    vocab, data = _tokenizer_vocab(tokenizer_folder)
    n_tok = max(vocab.values()) + 1
    if n_tok > cfg.vocab_size:
        raise UserError(
            f"the tokenizer in {tokenizer_folder} has {n_tok} ids but the model's embedding "
            f"has {cfg.vocab_size} rows; they do not belong together."
        )
    if cfg.position_offset > 0:
        raise UserError(
            "vocabulary pruning supports BERT-style models; this one positions tokens "
            "RoBERTa-style (from its pad id), which re-numbering would break."
        )
    tokenizer = _load_tokenizer(tokenizer_folder)
    counts, n_texts = _count_ids(tokenizer, texts)
    if n_texts == 0:
        raise UserError(
            "vocabulary pruning needs the training texts to see which tokens are used, "
            "but none were given."
        )
    keep = set(counts)
    keep |= {int(i) for i in tokenizer.all_special_ids}
    if data is not None:
        keep |= {int(t["id"]) for t in data.get("added_tokens") or []}
    keep.add(cfg.pad_token_id)
    for i in extra_ids:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_tok:
            raise UserError(
                f"prune.extra_ids names {i!r}, but the tokenizer's ids are 0 to {n_tok - 1}."
            )
        keep.add(i)
    kept_ids = sorted(keep)
    unk_rate = _unk_rate(tokenizer, counts)

    write_remapped_tokenizer(tokenizer_folder, out, kept_ids)
    new_tok = _load_tokenizer(out)
    # Cheap self-check that the written tokenizer agrees with the new embedding.
    id_map = {old: new for new, old in enumerate(kept_ids)}
    if len(new_tok) != len(kept_ids):
        raise RuntimeError(f"the pruned tokenizer has {len(new_tok)} ids, expected {len(kept_ids)}")
    unk_eval = changed = None
    if eval_texts is not None and len(eval_texts):
        old_ids = tokenizer(list(eval_texts), add_special_tokens=True)["input_ids"]
        new_ids = new_tok(list(eval_texts), add_special_tokens=True)["input_ids"]
        changed = sum(
            [id_map.get(i, -1) for i in a] != b for a, b in zip(old_ids, new_ids, strict=True)
        ) / len(eval_texts)
        unk_eval = _unk_rate(new_tok, Counter(i for ids in new_ids for i in ids))

    state = _plain_state_dict(model)
    rows = torch.tensor(kept_ids, dtype=torch.long)
    key = "embeddings.word_embeddings.weight"
    state[key] = _take(state[key], 0, rows)
    config = replace(
        copy.deepcopy(cfg), vocab_size=len(kept_ids), pad_token_id=id_map[cfg.pad_token_id]
    )
    report = VocabReport(
        kept=len(kept_ids),
        original=cfg.vocab_size,
        unk_rate_on_texts=unk_rate,
        unk_rate_on_eval=unk_eval,
        changed_on_eval=changed,
        kept_ids=kept_ids,
    )
    return _new_model(model, config, state), report
