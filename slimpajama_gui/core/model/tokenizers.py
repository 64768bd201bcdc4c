"""Tokenizers: loaded from local files only, never with model code."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage.atomic import atomic_write_text
from slimpajama_gui.core.storage.safe_io import read_json_object, resolve_inside

#: Held while transformers' lazy modules are first imported. Its lazy ``__getattr__`` is
#: not thread-safe: a job's ``from transformers import AutoTokenizer`` while the start-up
#: warm-up (``core/jobs/warmup.py``) imports the tokenizer modules on another thread
#: failed with "cannot import name 'AutoTokenizer'".
IMPORT_LOCK = threading.RLock()


def load_tokenizer(folder: Path | str):
    """A tokenizer from ``folder``: local files only, never model code.

    Raises:
        UserError: "tokenizer not found in FOLDER" with the reason.
    """
    with IMPORT_LOCK:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

    folder = Path(folder)
    for name in READ_FILES:  # P1: transformers follows links; we refuse those that leave
        if os.path.lexists(folder / name):
            resolve_inside(folder / name, folder)
    # AutoTokenizer also reads config.json and warns that it does not know our own
    # "slimpajama" model_type; the tokenizer files decide the class, so silence it.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # transformers raises many types; the user needs one
        raise UserError(
            f"tokenizer not found in {folder}: it could not be loaded ({_first_line(exc)}). "
            "Copy the tokenizer files from the model's source."
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    # A tokenizer that loads may still fail on the first word it does not know (a
    # vocab.txt without [UNK]): find out now, with a sentence, not inside a job.
    try:
        tokenizer(PROBE_TEXT, PROBE_TEXT, truncation=True, max_length=64)
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises bare Exception
        files = [n for n in ("tokenizer.json", "vocab.txt", "vocab.json") if (folder / n).is_file()]
        raise UserError(
            f"the tokenizer in {folder} cannot read text ({_first_line(exc)}); its "
            f"{' / '.join(files) or 'files'} are incomplete. Copy the tokenizer files "
            "from the model's source."
        ) from exc
    return tokenizer


def without_fixed_padding(data: dict[str, Any]) -> bool:
    """Turn a fixed-length padding of a parsed ``tokenizer.json`` into batch-longest.

    Why: the ``tokenizers`` library applies the file's padding on every ``encode``.
    Sentence-transformers' MiniLM ships ``{"Fixed": 128}``, so a result folder loaded
    that way pads a 10-token sentence to 128 and runs the model on 13x the tokens at
    batch 1. Our own loading (transformers) sets padding per call and is unaffected;
    the pad token and id are kept. Changes ``data`` in place.

    Returns:
        True when the padding was changed.
    """
    padding = data.get("padding")
    strategy = padding.get("strategy") if isinstance(padding, dict) else None
    if isinstance(strategy, dict) and "Fixed" in strategy:
        padding["strategy"] = "BatchLongest"
        return True
    return False


def fix_saved_padding(folder: Path) -> bool:
    """:func:`without_fixed_padding` for ``folder/tokenizer.json`` (a result's, being
    written), rewritten atomically and compact; no change if it has none.

    Returns:
        True when the file was rewritten.
    """
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return False  # read (and refused with a sentence) wherever the folder is loaded
    if not isinstance(data, dict) or not without_fixed_padding(data):
        return False
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return True


#: Files AutoTokenizer may read from a model folder.
READ_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
)

#: Text no tokenizer knows all of: unknown words, accents, symbols, a pair.
PROBE_TEXT = "the qzxvbk Ünïcødé ☃ 𝔘 42 — end"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:300] if text else "") or type(exc).__name__


def pin_tokenizer_class(folder: Path | str, tokenizer: Any) -> bool:
    """Name ``tokenizer``'s class in ``folder/tokenizer_config.json`` when it names none.

    Without ``tokenizer_class`` :func:`load_tokenizer` picks the class from
    ``config.json``'s ``model_type``, and a saved variant's is ``slimpajama``: a BERT
    tokenizer would load there as a plain ``tokenizers`` backend that ignores
    ``do_lower_case`` (or, with only ``vocab.txt``, not at all), so the saved model
    would read other ids than the ones it was trained and measured on.

    Args:
        folder: a folder with tokenizer files (``tokenizer_config.json`` is created if
            missing, written atomically).
        tokenizer: the tokenizer those files were loaded as.

    Returns:
        Whether the file was written.

    Raises:
        UserError: ``tokenizer_config.json`` is not a JSON object.
    """
    path = Path(folder) / "tokenizer_config.json"
    config: Any = read_json_object(path) if path.is_file() else {}
    if config.get("tokenizer_class"):
        return False
    config["tokenizer_class"] = type(tokenizer).__name__
    atomic_write_text(path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return True


#: Tokens no text produces: BERT's [unused0] ... placeholders and specials like [CLS].
_NOT_TEXT = re.compile(r"\[[^\[\]]+\]|<[^<>]+>")


def common_token_ids(tokenizer: Any, count: int) -> list[int]:
    """The ``count`` token ids general English text needs most (sorted by id).

    First the spelling pieces (one character, or ``##`` and one character), which let
    every word still be spelt, so keeping these ids never turns into [UNK] a word the
    original tokenizer could read. Then the words of wordfreq's English list (about
    321,000 words from subtitles, Wikipedia, news, books, web text, Twitter and Reddit;
    numbers from its estimate for each number token), most frequent first, each adding
    the ids of its tokenization. A kept word reads exactly as before after pruning:
    WordPiece takes the longest known piece, and the pieces it took before are still
    known while no longer one can appear. Ids no listed word uses come last, by id.
    Placeholders and bracketed specials (``[unused5]``, ``[CLS]``, ``<s>``) are never
    returned.

    Why not the vocabulary's own order: BERT's WordPiece list is only roughly ordered
    by frequency in its Wikipedia and book pre-training text; "sturdy" and "creamy"
    sit beyond id 20,000 there (common in reviews, rare in Wikipedia), so keeping the
    first ids spelt them in pieces ("stu ##rdy") and changed predictions on reviews
    from other domains (docs/benchmarks.md, ood-check).

    Args:
        tokenizer: a loaded tokenizer (``get_vocab()`` and ``__call__`` as in
            transformers); lower-case words are fed to it, as wordfreq lists them.
        count: how many ids to return (0 for none; more than there are gives them all).

    Returns:
        Up to ``count`` ids, increasing.

    Raises:
        ValueError: ``count`` is negative.
    """
    if count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    if count == 0:
        return []
    return sorted(_ranking_for(tokenizer).first(count, tokenizer))


def text_id_count(tokenizer: Any) -> int:
    """How many ids :func:`common_token_ids` can return: the vocabulary less placeholders
    and bracketed specials (``[unused5]``, ``[CLS]``); a larger ``count`` returns these."""
    return len(_ranking_for(tokenizer).text)


class _GeneralRanking:
    """One vocabulary's ids in :func:`common_token_ids`' order, extended on demand.

    Why kept: the wizard counts the vocabulary again at every keep_general it is given;
    20,000 ids need the first ~40,000 words (0.7 s), a value near the whole vocabulary
    all 321,000 (5 s), so the words already tokenized are never tokenized again. The
    lock makes concurrent counts (one worker per edit) wait for one another instead of
    repeating the work. No tokenizer is kept: each call tokenizes with its caller's (a
    fast tokenizer used by two threads at once raises "Already borrowed").
    """

    def __init__(self, tokenizer: Any) -> None:
        self.text = {i: t for t, i in tokenizer.get_vocab().items() if not _NOT_TEXT.fullmatch(t)}
        spelling = sorted(i for i, t in self.text.items() if len(t.removeprefix("##")) == 1)
        self.order = dict.fromkeys(spelling)
        self.words: list[str] | None = None
        self.next_word = 0
        self.lock = threading.Lock()

    def first(self, count: int, tokenizer: Any) -> list[int]:
        with self.lock:
            if count >= len(self.text):
                return list(self.text)
            if self.words is None:
                self.words = _general_words(tuple(t for t in self.text.values() if t.isdigit()))
            while len(self.order) < count and self.next_word < len(self.words):
                chunk = self.words[self.next_word : self.next_word + _WORD_CHUNK]
                self.next_word += len(chunk)
                for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"]:
                    self.order.update(dict.fromkeys(i for i in ids if i in self.text))
            if len(self.order) < count:  # ids no listed word uses, by id
                self.order.update(dict.fromkeys(sorted(self.text)))
            return list(self.order)[:count]


def _ranking_for(tokenizer: Any) -> _GeneralRanking:
    """The cached ranking of ``tokenizer``'s vocabulary (same class, casing and ids)."""
    vocab = tokenizer.get_vocab()
    key = (
        type(tokenizer).__name__,
        getattr(tokenizer, "do_lower_case", None),
        len(vocab),
        hash(frozenset(vocab.items())),
    )
    with _RANKINGS_LOCK:
        ranking = _RANKINGS.get(key)
        if ranking is None:
            ranking = _RANKINGS[key] = _GeneralRanking(tokenizer)
        return ranking


_RANKINGS: dict[tuple, _GeneralRanking] = {}
_RANKINGS_LOCK = threading.Lock()


#: Words tokenized at a time by :func:`common_token_ids`.
_WORD_CHUNK = 4096


def _general_words(numbers: tuple[str, ...]) -> list[str]:
    """wordfreq's English words, most frequent first, with ``numbers`` placed by theirs.

    wordfreq lists numbers of several digits as "0" patterns ("0000" for any year), which
    no vocabulary spells that way, so those entries are left out and each number token
    of the vocabulary is placed by wordfreq's own estimate for it instead.
    """
    from wordfreq import get_frequency_dict, word_frequency

    table = get_frequency_dict("en", wordlist="best")
    scored = [(f, w) for w, f in table.items() if "0" not in w]
    scored += [(word_frequency(n, "en"), n) for n in numbers]
    scored.sort(key=lambda fw: -fw[0])
    return [w for _, w in scored]
