"""The size estimate of a chain, from a model's headers alone (core.plan.estimate, no Qt)."""

from __future__ import annotations

import pytest

from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.model.inspection import inspect_model
from slimpajama_gui.core.plan.estimate import count_vocabulary, estimate_chain
from slimpajama_gui.core.plan.steps import Distill, Evaluate, Prune, Quantize


def test_estimate_matches_the_reference_chain():
    """docs/reference.md: 3-layer student, 11,575 ids, onnxruntime int8 per-channel: 10.3 MB."""
    info = inspect_model(packaged_minilm_path(), "packaged")
    same = estimate_chain(info, [Evaluate()], num_labels=2)
    # The encoder-only model gets a 2-class head (384 x 2 + 2); nothing else changes.
    assert same.parameters_after == info.parameters + 770
    assert same.size_after == pytest.approx(info.size_bytes, rel=1e-3)
    chain = [
        Distill(student_layers=[1, 3, 5]),
        Prune(method="vocabulary"),
        Quantize(method="dynamic_int8", backend="onnxruntime"),
    ]
    est = estimate_chain(info, chain, vocab_kept=11_575, num_labels=2)
    assert est.layers_after == 3 and est.vocab_after == 11_575
    assert est.size_after == pytest.approx(10.3e6, rel=0.1)
    # A head is added to the encoder-only model (2 classes): 22.7 M -> about 10 M.
    assert est.parameters_after == pytest.approx(10.0e6, rel=0.05)
    # 4-bit word embeddings: measured on an SST-2 student with these 11,575 ids, the file
    # went from 8.45 MB (int8 rows) to 6.79 MB (4 bits, blocks of 32): 1.66 MB saved.
    chain4 = [*chain[:2], Quantize(method="dynamic_int8", backend="onnxruntime", embedding_bits=4)]
    est4 = estimate_chain(info, chain4, vocab_kept=11_575, num_labels=2)
    assert est.size_after - est4.size_after == pytest.approx(1.66e6, rel=0.15)
    assert est4.weights_after == "int8 (onnxruntime), word embeddings 4-bit"
    assert est4.parameters_after == est.parameters_after
    heads = estimate_chain(info, [Prune(method="heads", amount=0.5)])
    assert heads.heads_after == [6] * 6 and heads.parameters_after < info.parameters
    int4 = estimate_chain(info, [Quantize(method="weight_int4", backend="pytorch")])
    int8 = estimate_chain(info, [Quantize(method="weight_int8", backend="pytorch")])
    assert int4.size_after < int8.size_after < info.size_bytes
    sparse = estimate_chain(info, [Prune(method="magnitude", amount=0.5)])
    assert sparse.size_after == same.size_after and sparse.nonzero_after < info.parameters


def test_estimate_guesses_the_vocabulary_until_it_is_counted():
    info = inspect_model(packaged_minilm_path(), "packaged")
    guess = estimate_chain(info, [Prune(method="vocabulary", keep_general=0)])
    assert not guess.vocab_counted and "guess" in " ".join(guess.notes)
    assert guess.vocab_after < info.vocab
    wider = estimate_chain(info, [Prune(method="vocabulary", keep_general=10_000)])
    assert guess.vocab_after < wider.vocab_after <= info.vocab
    counted = estimate_chain(info, [Prune(method="vocabulary")], vocab_kept=5_000)
    assert counted.vocab_counted and counted.vocab_after == 5_000
    assert "smaller than" in counted.headline()


def test_count_vocabulary_counts_used_and_special_ids():
    texts = ["a film", "a film"]
    key, count = count_vocabulary(("k",), packaged_minilm_path(), texts, keep_general=0)
    assert key == ("k",)
    assert 4 <= count < 20  # [CLS] a film [SEP] plus the other special tokens
    # The step's default also keeps the tokenizer's common tokens, and so does the count.
    _, general = count_vocabulary(("k",), packaged_minilm_path(), texts, keep_general=3000)
    assert 3000 <= general <= 3000 + count
    _, default = count_vocabulary(("k",), packaged_minilm_path(), texts)
    assert default >= Prune().keep_general


def test_estimate_counts_a_student_with_half_its_ffn():
    info = inspect_model(packaged_minilm_path(), "packaged")
    tail = [Prune(method="vocabulary"), Quantize(method="dynamic_int8", backend="onnxruntime")]
    full = estimate_chain(info, [Distill(student_layers=[1, 3, 5]), *tail], vocab_kept=11_575)
    narrow = estimate_chain(
        info, [Distill(student_layers=[1, 3, 5], ffn_fraction=0.5), *tail], vocab_kept=11_575
    )
    # Each of 3 layers loses 768 of its 1,536 FFN neurons: 2 x 384 x 768 + 768 parameters.
    assert full.parameters_after - narrow.parameters_after == 3 * (2 * 384 * 768 + 768)
    assert narrow.size_after < full.size_after
