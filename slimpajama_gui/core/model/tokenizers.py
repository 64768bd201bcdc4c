"""Tokenizers: loaded from local files only, never with model code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage.safe_io import (
    atomic_write_text,
    read_json_object,
)


def load_tokenizer(folder: Path | str):
    """A tokenizer from ``folder``: local files only, never model code.

    Raises:
        UserError: "tokenizer not found in FOLDER" with the reason.
    """
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # AutoTokenizer also reads config.json and warns that it does not know our own
    # "slimpajama" model_type; the tokenizer files decide the class, so silence it.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # transformers raises many types; the user needs one
        raise UserError(
            f"tokenizer not found in {folder}: it could not be loaded ({exc}). "
            "Copy the tokenizer files from the model's source."
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)


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
