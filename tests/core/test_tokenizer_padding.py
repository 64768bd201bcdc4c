"""A result's tokenizer.json pads to the longest sentence of a batch, not to a fixed 128.

The packaged MiniLM's tokenizer.json (sentence-transformers') says ``{"Fixed": 128}``:
copied as it is, anyone who loads a result with the ``tokenizers`` library would run the
model on 128 tokens for a 6-token sentence. Every way a result gets its tokenizer (a
plain copy, a vocabulary pruning's re-numbered file) must turn that into batch-longest,
and never touch the source's file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.model.saving import copy_tokenizer_files, save_pretrained
from slimpajama_gui.core.techniques.prune.vocabulary import prune_vocabulary
from tests.core.test_vocabulary import TEXTS, tiny_model


def _padding(folder: Path):
    return json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["padding"]


@pytest.fixture(scope="module")
def source() -> Path:
    folder = packaged_minilm_path()
    assert _padding(folder)["strategy"] == {"Fixed": 128}  # what this test is about
    return folder


def _encoded_lengths(folder: Path) -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    single = len(tokenizer.encode("loved it").ids)
    batch = {len(e.ids) for e in tokenizer.encode_batch(["loved it", "a rather longer one"])}
    return [single, *sorted(batch)]


def test_a_copied_tokenizer_pads_to_the_batch_not_to_128(tmp_path, source):
    before = (source / "tokenizer.json").read_bytes()
    out = tmp_path / "copy"
    out.mkdir()
    copy_tokenizer_files(source, out)
    padding = _padding(out)
    assert padding["strategy"] == "BatchLongest"
    assert padding["pad_token"] == "[PAD]" and padding["pad_id"] == 0
    # [CLS] loved it [SEP]: 4 ids alone; a batch pads to its longest sentence only.
    single, batch = _encoded_lengths(out)[0], _encoded_lengths(out)[1:]
    assert single == 4 and len(batch) == 1 and batch[0] < 128
    assert (source / "tokenizer.json").read_bytes() == before  # the source is never changed


def test_a_saved_model_and_a_pruned_vocabulary_carry_the_same_fix(tmp_path, source):
    model = tiny_model(vocab_size=30522, hidden_size=16, head_dim=4, layer_ffn=[32] * 3)
    saved = save_pretrained(model, tmp_path / "saved", tokenizer_from=source)
    assert _padding(saved)["strategy"] == "BatchLongest"
    assert _encoded_lengths(saved)[0] == 4
    out = tmp_path / "pruned"
    small, _report = prune_vocabulary(model, source, iter(TEXTS), out)
    padding = _padding(out)
    assert padding["strategy"] == "BatchLongest"
    assert padding["pad_id"] == 0  # [PAD] keeps id 0 after re-numbering
    assert _encoded_lengths(out)[0] == 4
    assert small.config.vocab_size < 30522
