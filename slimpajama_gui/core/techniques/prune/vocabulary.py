"""Vocabulary pruning: keep the word-embedding rows the data uses, re-number the tokenizer.

:func:`prune_vocabulary` returns a new :class:`EncoderClassifier` whose word embedding has
only the rows of the token ids the training rows use (every text column, plus special
and added tokens) and, with ``keep_general``, the tokenizer's most common tokens, and
writes a re-numbered WordPiece tokenizer to match. Measured on the packaged MiniLM-L6:
keeping the vocabulary SST-2's training sentences use leaves 11,575 of 30,522 embedding
rows (22.7 M -> 15.4 M parameters).

Why ``keep_general``: a word the training texts never use is read as other, smaller
pieces after pruning (or [UNK]), so text from another domain reads differently than the
model was trained to read it. ``benchmarks/ood_check.py`` measures that on the
out-of-domain sets in ``resources/ood``; the default of the recipe's ``keep_general``
is chosen there (see :class:`~slimpajama_gui.core.plan.steps.Prune`).

The step promises to change nothing the model reads on its training rows, and checks
it: the tokenizer is reloaded from the folder written, every train row (pairs encoded
as pairs, truncated as :func:`slimpajama_gui.core.data.batching.encode` truncates for the model)
must give the old ids mapped to new ones, or :func:`prune_vocabulary` refuses. The
figures of :class:`VocabReport` are measured with that reloaded tokenizer too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.model.saving import TOKENIZER_FILES
from slimpajama_gui.core.model.tokenizers import (
    common_token_ids,
    load_tokenizer,
    pin_tokenizer_class,
    text_id_count,
    without_fixed_padding,
)
from slimpajama_gui.core.storage.atomic import atomic_write_text
from slimpajama_gui.core.storage.safe_io import read_json_object, resolve_inside
from slimpajama_gui.core.techniques.prune.layers import (
    _check_slim,
    _new_model,
    _plain_state_dict,
    _take,
)

#: Rows tokenized at a time (bounds the memory of the id lists).
CHUNK_ROWS = 2048
#: The pipeline's stop check: called between chunks, raises to stop.
Check = Callable[[], None] | None


@dataclass
class VocabReport:
    """What vocabulary pruning kept, and what it changed, measured after the fact.

    Every rate is over the tokens the model reads (encoded as the model's encoding
    does: both text columns, special tokens, truncation), with special tokens other
    than [UNK] not counted. A figure that could not be measured is None, never 0.0,
    and ``note`` says why.

    Attributes:
        kept: ids kept (rows of the new embedding).
        original: ids before (rows of the old embedding).
        kept_general: of ``kept``, the ids kept only because they are among the
            tokenizer's ``keep_general`` most common tokens (the train rows do not use
            them); 0 when ``keep_general`` is 0.
        train_rows: train rows (or pairs) checked to read the same ids, mapped, after
            pruning (all of them; a row that does not makes pruning refuse).
        unk_rate_on_texts: share of [UNK] in the train rows, with the pruned tokenizer
            as saved (equal to the old tokenizer's, as every train row maps 1:1).
        eval_rows: eval rows (or pairs) measured; None without eval rows.
        unk_rate_on_eval: share of [UNK] in the eval rows with the pruned tokenizer
            (words whose pieces were dropped become other kept pieces or [UNK]).
        unk_rate_on_eval_before: the same with the original tokenizer.
        changed_on_eval: share of eval rows whose token sequence changed (the new ids
            are not the old ids mapped).
        note: why a figure is None; empty when all were measured.
        kept_ids: the original ids kept, in new-id order (new id = position).
    """

    kept: int
    original: int
    train_rows: int
    unk_rate_on_texts: float | None
    kept_general: int = 0
    eval_rows: int | None = None
    unk_rate_on_eval: float | None = None
    unk_rate_on_eval_before: float | None = None
    changed_on_eval: float | None = None
    note: str = ""
    kept_ids: list[int] = field(default_factory=list, repr=False)
    #: Set when ``keep_general`` asked for every text id the tokenizer has: the step then
    #: removes only placeholders, and the user should hear that it made little difference.
    all_text_ids: int | None = None

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

    def sentence(self) -> str:
        """The report for a person: what was kept and what it changed, in one sentence."""

        def pct(value: float | None) -> str:
            return "not measured" if value is None else f"{100 * value:.2f} %"

        general = (
            f" ({self.kept_general:,} of them for general text, not used by the train rows)"
            if self.kept_general
            else ""
        )
        text = (
            f"vocabulary pruning kept {self.kept:,} of {self.original:,} token ids{general}; all "
            f"{self.train_rows:,} train rows read the same tokens as before ([UNK] "
            f"{pct(self.unk_rate_on_texts)})"
        )
        if self.eval_rows is None:
            text = f"{text}; {self.note}"
        else:
            # Re-spelt words first: they change predictions even when no [UNK] appears.
            text = (
                f"{text}; of the {self.eval_rows:,} eval rows {pct(self.changed_on_eval)} read "
                f"other tokens (words the kept ids spell in smaller pieces, or [UNK]: "
                f"{pct(self.unk_rate_on_eval_before)} before, {pct(self.unk_rate_on_eval)} after)."
            )
        if self.all_text_ids is not None:
            text += (
                f" keep_general asked for all {self.all_text_ids:,} ids this tokenizer has for "
                f"text, so only {self.original - self.kept:,} placeholder ids went: lower "
                "prune.keep_general (the smallest preset keeps 20,000) for a smaller model."
            )
        return text


def _load_tokenizer(folder: Path):
    return load_tokenizer(folder)


def _tokenizer_vocab(folder: Path) -> tuple[dict[str, int], dict[str, Any] | None]:
    """token -> id of a WordPiece tokenizer folder, and its parsed tokenizer.json (or None)."""
    tj = folder / "tokenizer.json"
    if tj.is_file():
        data = read_json_object(tj)
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
        lines = resolve_inside(vt).read_text(encoding="utf-8").split("\n")
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
        without_fixed_padding(data)
        # Compact JSON, as the tokenizers library reads it: the indented form spends a
        # third of the file (120 KB of 333 KB at 14,813 ids) on spaces.
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        atomic_write_text(dst / "tokenizer.json", text)
        written.append("tokenizer.json")
    if (src / "vocab.txt").is_file() or data is not None:
        lines = [by_id[old] for old in kept_ids]
        atomic_write_text(dst / "vocab.txt", "\n".join(lines) + "\n")
        written.append("vocab.txt")
    tc = src / "tokenizer_config.json"
    if tc.is_file():
        cfg = read_json_object(tc)
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
                added = read_json_object(src / name)
                text = json.dumps({k: id_map[int(v)] for k, v in added.items() if int(v) in id_map})
            else:
                text = resolve_inside(src / name).read_text(encoding="utf-8")
            atomic_write_text(dst / name, text)
            written.append(name)
    return written


def _check_pairs(texts: Sequence[str], pairs: Sequence[str] | None, what: str) -> None:
    if pairs is not None and len(pairs) != len(texts):
        raise ValueError(f"{len(texts)} {what} texts but {len(pairs)} second texts")


def _chunks(texts: Sequence[str], pairs: Sequence[str] | None, check: Check = None):
    """(start, texts, pairs) of at most :data:`CHUNK_ROWS` rows; ``check()`` before each."""
    for start in range(0, len(texts), CHUNK_ROWS):
        if check is not None:
            check()
        stop = start + CHUNK_ROWS
        yield start, texts[start:stop], None if pairs is None else pairs[start:stop]


def _read_rows(
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    max_length: int,
    check: Check = None,
) -> tuple[list[data_mod.Encoded], set[int]]:
    """The rows as the model reads them (one :class:`Encoded` per chunk), and every id
    they use before token truncation.

    The ids of a cut row's whole text count too: which tokens a pair loses to
    truncation depends on the length of both texts, so each word must keep its pieces
    for the cut to fall where it did.
    """
    chunks: list[data_mod.Encoded] = []
    used: set[int] = set()
    for _, a, b in _chunks(texts, pairs, check):
        enc = data_mod.encode(a, tokenizer, max_length, b)
        for ids in enc.input_ids:
            used.update(ids)
        cut = [j for j, ids in enumerate(enc.input_ids) if len(ids) >= max_length]
        if cut:
            whole = data_mod.encode(
                [a[j] for j in cut],
                tokenizer,
                max_length,
                None if b is None else [b[j] for j in cut],
                truncate=False,
            )
            for ids in whole.input_ids:
                used.update(ids)
        chunks.append(enc)
    return chunks, used


@dataclass
class _Comparison:
    """The rows encoded with the old and the new tokenizer, side by side."""

    rows: int = 0
    changed: list[int] = field(default_factory=list)  # row indices, in order
    unk_new: int = 0
    tokens_new: int = 0
    unk_old: int = 0
    tokens_old: int = 0

    @staticmethod
    def rate(unk: int, tokens: int) -> float | None:
        return unk / tokens if tokens else None


def _compare(
    old_tok,
    old_chunks: Sequence[data_mod.Encoded],
    new_tok,
    id_map: dict[int, int],
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    max_length: int,
    check: Check = None,
) -> _Comparison:
    """Encode the rows as the model reads them with the new tokenizer and compare with
    ``old_chunks`` (the same rows and chunks, from :func:`_read_rows`)."""
    result = _Comparison()
    old_special = set(old_tok.all_special_ids) - {old_tok.unk_token_id}
    new_special = set(new_tok.all_special_ids) - {new_tok.unk_token_id}
    for (start, a, b), old in zip(_chunks(texts, pairs, check), old_chunks, strict=True):
        new = data_mod.encode(a, new_tok, max_length, b)
        for j, (o, n) in enumerate(zip(old.input_ids, new.input_ids, strict=True)):
            same = len(o) == len(n) and all(
                id_map.get(i, -1) == k for i, k in zip(o, n, strict=True)
            )
            if same and old.token_type_ids is not None:
                same = new.token_type_ids is not None and (
                    old.token_type_ids[j] == new.token_type_ids[j]
                )
            if not same:
                result.changed.append(start + j)
            result.unk_old += sum(i == old_tok.unk_token_id for i in o)
            result.tokens_old += sum(i not in old_special for i in o)
            result.unk_new += sum(k == new_tok.unk_token_id for k in n)
            result.tokens_new += sum(k not in new_special for k in n)
        result.rows += len(a)
    return result


def _describe_row(texts: Sequence[str], pairs: Sequence[str] | None, i: int) -> str:
    def short(text: str) -> str:
        return repr(text if len(text) <= 60 else text[:57] + "...")

    return short(texts[i]) + ("" if pairs is None else f" / {short(pairs[i])}")


def prune_vocabulary(
    model: EncoderClassifier,
    tokenizer_folder: Path,
    texts: Iterable[str],
    out_tokenizer_folder: Path,
    *,
    pairs: Iterable[str] | None = None,
    extra_ids: Iterable[int] = (),
    keep_general: int = 0,
    eval_texts: Sequence[str] | None = None,
    eval_pairs: Sequence[str] | None = None,
    max_length: int | None = None,
    check: Check = None,
) -> tuple[EncoderClassifier, VocabReport]:
    """A NEW model whose word embedding has only the rows the train rows use, plus a tokenizer.

    Keeps every id the tokenizer produces on the train rows (``texts``, with ``pairs``
    as their second texts), every special/added token, the model's pad id and
    ``extra_ids``; tokens keep their order and are numbered 0, 1, ... . A matching
    WordPiece tokenizer is written to ``out_tokenizer_folder``. On the train rows the
    new pair reads the same tokens and gives the same logits as the old pair:
    WordPiece matches the longest known piece first, and every piece those rows use
    is still known. This is checked, not assumed: the tokenizer is reloaded from
    ``out_tokenizer_folder`` and every train row must encode to the old ids mapped.
    A word never seen falls back to kept sub-pieces, or [UNK].

    ``keep_general`` keeps the tokenizer's most common tokens as well
    (:func:`~slimpajama_gui.core.model.tokenizers.common_token_ids`: the spelling pieces,
    then the tokens of the most frequent English words by wordfreq's counts, each such
    word whole), so text from outside the training data still reads as whole words. ``extra_ids`` keeps
    any other ids (e.g. those of a second dataset).

    Args:
        model: read only.
        tokenizer_folder: the model's tokenizer (``tokenizer.json`` and/or ``vocab.txt``),
            as the model reads with it (loaded with
            :func:`slimpajama_gui.core.model.tokenizers.load_tokenizer`).
        texts: the training texts (any iterable; read once).
        out_tokenizer_folder: where the re-numbered tokenizer files go (created if
            needed; other files there are left alone; never ``tokenizer_folder``).
        pairs: the second text of each training row, for sentence-pair data.
        extra_ids: original ids to keep as well.
        keep_general: how many of the tokenizer's most common tokens to keep as well
            (0 = only what the rows use).
        eval_texts: held-out texts on which to measure what pruning changes.
        eval_pairs: their second texts.
        max_length: tokens per row the model reads (the dataset's ``max_length``);
            None = the model's position table.
        check: called before every chunk of rows is encoded; raises to stop (the
            pipeline's stop check), and whatever it raises propagates.

    Returns:
        The new model (``vocab_size`` and ``pad_token_id`` updated) and a
        :class:`VocabReport`. Training data already encoded with the old tokenizer
        must be encoded again (or mapped with ``report.id_map``).

    Raises:
        UserError: the tokenizer is not WordPiece or does not fit the model, an extra
            id is out of range, ``keep_general`` is negative, or a train row would read other tokens after pruning
            (the sentence names it; nothing is returned).
        ValueError: ``pairs`` (or ``eval_pairs``) and the texts differ in length.
    """
    _check_slim(model)
    tokenizer_folder, out = Path(tokenizer_folder), Path(out_tokenizer_folder)
    cfg = model.config
    texts = list(texts)
    pairs = None if pairs is None else list(pairs)
    _check_pairs(texts, pairs, "train")
    eval_texts = None if eval_texts is None else list(eval_texts)
    eval_pairs = None if eval_pairs is None or eval_texts is None else list(eval_pairs)
    if eval_texts is not None:
        _check_pairs(eval_texts, eval_pairs, "eval")
    length = int(max_length) if max_length is not None else cfg.max_position_embeddings
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
    if not texts:
        raise UserError(
            "vocabulary pruning needs the training texts to see which tokens are used, "
            "but none were given."
        )
    tokenizer = _load_tokenizer(tokenizer_folder)
    old_train, keep = _read_rows(tokenizer, texts, pairs, length, check)
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
    if isinstance(keep_general, bool) or not isinstance(keep_general, int) or keep_general < 0:
        raise UserError(
            f"prune.keep_general is {keep_general!r}; give how many of the tokenizer's most "
            "common tokens to keep as well, 0 or more."
        )
    general = set(common_token_ids(tokenizer, keep_general)) - keep
    n_text = text_id_count(tokenizer) if keep_general else 0
    keep |= general
    kept_ids = sorted(keep)

    write_remapped_tokenizer(tokenizer_folder, out, kept_ids)
    # Load it back as the same class: without a named class it would load by
    # config.json, which a saved variant does not share with the source.
    pin_tokenizer_class(out, tokenizer)
    new_tok = _load_tokenizer(out)
    if len(new_tok) != len(kept_ids):
        raise RuntimeError(f"the pruned tokenizer has {len(new_tok)} ids, expected {len(kept_ids)}")
    id_map = {old: new for new, old in enumerate(kept_ids)}
    train = _compare(tokenizer, old_train, new_tok, id_map, texts, pairs, length, check)
    if train.changed:
        first = train.changed[0]
        raise UserError(
            f"vocabulary pruning would change what the model reads: with the pruned "
            f"tokenizer, {len(train.changed)} of {len(texts)} train rows read other tokens "
            f"than before (row {first + 1}: {_describe_row(texts, pairs, first)}), so no "
            "pruned model was made. Leave the vocabulary step out for this tokenizer, and "
            "please report it."
        )
    report = VocabReport(
        kept=len(kept_ids),
        original=cfg.vocab_size,
        train_rows=train.rows,
        unk_rate_on_texts=_Comparison.rate(train.unk_new, train.tokens_new),
        kept_general=len(general),
        kept_ids=kept_ids,
        all_text_ids=n_text if keep_general and keep_general >= n_text else None,
    )
    if eval_texts:
        old_eval, _ = _read_rows(tokenizer, eval_texts, eval_pairs, length, check)
        ev = _compare(tokenizer, old_eval, new_tok, id_map, eval_texts, eval_pairs, length, check)
        report.eval_rows = ev.rows
        report.unk_rate_on_eval = _Comparison.rate(ev.unk_new, ev.tokens_new)
        report.unk_rate_on_eval_before = _Comparison.rate(ev.unk_old, ev.tokens_old)
        report.changed_on_eval = len(ev.changed) / ev.rows
    else:
        report.note = "no eval rows were given, so nothing was measured on eval."

    state = _plain_state_dict(model)
    rows = torch.tensor(kept_ids, dtype=torch.long)
    key = "embeddings.word_embeddings.weight"
    state[key] = _take(state[key], 0, rows)
    config = replace(
        copy.deepcopy(cfg), vocab_size=len(kept_ids), pad_token_id=id_map[cfg.pad_token_id]
    )
    return _new_model(model, config, state), report
