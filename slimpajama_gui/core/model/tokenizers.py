"""Tokenizers: loaded from local files only, never with model code."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
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


def common_token_ids(vocab: Mapping[str, int], count: int) -> list[int]:
    """The first ``count`` ids of a WordPiece vocabulary that text can produce (sorted).

    Why the first: BERT's WordPiece vocabularies (MiniLM's is BERT's uncased one) list,
    after the special tokens and the ``[unusedN]`` placeholders, the single characters
    (ids 999-1995) and then the word pieces in the order of their frequency in the
    pre-training text: ``the of and in to`` at 1996-2000, ``knight survey noise`` near
    5,000, ``thyroid nitrate`` near 29,600. So the first ids are those general English
    text needs most. Placeholders and bracketed specials (``[CLS]``, ``<s>``) are
    skipped; a vocabulary not ordered by frequency gets its first ids all the same.

    Args:
        vocab: token -> id (e.g. a tokenizer's ``get_vocab()``).
        count: how many ids to return (0 for none; more than there are gives them all).

    Returns:
        Up to ``count`` ids, increasing.

    Raises:
        ValueError: ``count`` is negative.
    """
    if count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    order = sorted((i, t) for t, i in vocab.items())
    return [i for i, t in order if not _NOT_TEXT.fullmatch(t)][:count]
