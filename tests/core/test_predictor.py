"""The one inference path (core.runtime.predictor): float, quantized and ONNX, no Qt."""

from __future__ import annotations

import re
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.runtime.predictor import (
    ModelPredictor,
    PairResult,
    PredictorCache,
    compare_texts,
)
from tests.figures import measured
from tests.timing import TICK_MS, slow_start

TEXTS = ["the movie was good", "a boring film with a bad plot", "not funny at all"]


def _reference_probs(folder: Path, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    return torch.softmax(logits, -1).numpy()


def test_float_model_matches_transformers(tiny_bert):
    predictor = ModelPredictor(tiny_bert, batch_size=2)
    assert predictor.backend == "pytorch"
    probs, names, ms = predictor.predict(TEXTS)
    assert probs.shape == (3, 2) and probs.dtype == np.float32 and measured(ms)
    assert names == predictor.label_names and len(names) == 2
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, _reference_probs(tiny_bert, TEXTS), atol=1e-5)

    preds = predictor.predict_texts(TEXTS)
    assert [p.text for p in preds] == TEXTS
    assert all(p.path == Path(tiny_bert).resolve() or p.path == Path(tiny_bert) for p in preds)
    for p, row in zip(preds, probs, strict=True):
        assert p.label == names[int(np.argmax(row))]
        np.testing.assert_allclose(p.probs, row)


def test_no_texts_gives_an_empty_table(tiny_bert):
    probs, names, ms = ModelPredictor(tiny_bert).predict([])
    assert probs.shape == (0, 2) and ms == 0.0 and len(names) == 2


def test_long_text_is_truncated_with_a_warning_and_a_length_note(tiny_bert):
    predictor = ModelPredictor(tiny_bert, max_length=512)
    note = predictor.length_note("--max-length")
    assert note is not None and "512" in note and "--max-length" in note
    assert predictor.max_length <= 64
    scores = predictor.scores([" ".join(["movie"] * 200)])
    assert scores.probs.shape == (1, 2)
    assert any("truncated" in w for w in scores.warnings), scores.warnings
    assert ModelPredictor(tiny_bert, max_length=32).length_note("--max-length") is None


def test_an_encoder_without_a_head_is_refused_with_the_callers_hint(tmp_path, tiny_bert):
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(tiny_bert, tmp_path / "headless")
    state = load_file(str(folder / "model.safetensors"))
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError, match="no trained classifier head.*in Compress"):
        ModelPredictor(folder)
    with pytest.raises(UserError, match="fine-tune it first"):
        ModelPredictor(folder, no_head_hint="fine-tune it first.")


def test_a_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        ModelPredictor(tmp_path / "nothing-here")


def test_quantized_and_onnx_variants_load_through_the_same_path(tiny_bert, tmp_path):
    from slimpajama_gui.core.model.encoder import EncoderClassifier
    from slimpajama_gui.core.techniques.onnx_export import save_onnx_variant
    from slimpajama_gui.core.techniques.quantize.folders import save_quantized
    from slimpajama_gui.core.techniques.quantize.methods import quantize_model

    float_probs, names, _ = ModelPredictor(tiny_bert).predict(TEXTS)
    model = EncoderClassifier.from_pretrained(tiny_bert)

    fp16 = tmp_path / "fp16"
    fp16.mkdir()
    result = quantize_model(model, "fp16")
    save_quantized(result.model, result, fp16)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_bert / name).is_file():
            shutil.copy(tiny_bert / name, fp16 / name)
    quantized = ModelPredictor(fp16)
    assert quantized.backend == "pytorch" and quantized.label_names == names
    np.testing.assert_allclose(quantized.predict(TEXTS)[0], float_probs, atol=1e-2)

    onnx = tmp_path / "onnx"
    onnx.mkdir()
    save_onnx_variant(model, tiny_bert, onnx, quantized=False)
    predictor = ModelPredictor(onnx)
    assert predictor.backend == "onnx" and predictor.label_names == names
    np.testing.assert_allclose(predictor.predict(TEXTS)[0], float_probs, atol=1e-4)


class _Fake:
    def __init__(self, path: Path, names=("neg", "pos"), flip: bool = False) -> None:
        self.path = path
        self.label_names = list(names)
        self.flip = flip

    def predict(self, texts):
        probs = np.array([[0.9, 0.1] if ("bad" in t) != self.flip else [0.2, 0.8] for t in texts])
        return probs.astype(np.float32), list(self.label_names), 1.0


def test_cache_loads_each_folder_once_and_drops_the_least_recent(tmp_path):
    cache = PredictorCache(_Fake, size=2)
    a, b, c = (tmp_path / n for n in "abc")
    assert cache.peek(a) is None
    first = cache.get(a)
    assert cache.get(a) is first and cache.peek(a) is first
    cache.get(b)
    cache.get(a)  # a is now the most recent, so c pushes b out
    cache.get(c)
    assert cache.peek(b) is None and cache.peek(a) is first
    assert cache.loads[a.resolve()] == 1
    cache.clear()
    assert cache.peek(a) is None


def test_the_cache_warms_a_model_once_before_its_first_timed_prediction(tiny_bert, monkeypatch):
    """The Playground's first latency is the model's own, not its one-time start-up; a
    warm-up that fails stays silent and the real prediction reports the error."""
    calls = []
    real_scores = ModelPredictor.scores

    def counted(self, texts):
        calls.append(list(texts))
        return real_scores(self, texts)

    monkeypatch.setattr(ModelPredictor, "scores", counted)
    cache = PredictorCache(ModelPredictor)
    predictor = cache.get(tiny_bert)
    assert calls == [["warm-up"]]  # one pass before anyone reads a latency
    assert cache.get(tiny_bert) is predictor and len(calls) == 1  # cached: not again
    probs, names, _ms = predictor.predict(TEXTS)
    assert calls[-1] == list(TEXTS) and probs.shape == (len(TEXTS), len(names))

    def broken(self, texts):
        raise UserError("this model cannot read that text")

    monkeypatch.setattr(ModelPredictor, "scores", broken)
    assert predictor.warm_up() is None
    with pytest.raises(UserError, match="cannot read that text"):
        predictor.predict(TEXTS)


def test_the_first_latency_after_loading_is_the_forward_pass_alone(tiny_bert, monkeypatch):
    """Neither a slow load nor the first pass's start-up is in the first latency reported:
    the cache warms the model up, untimed, before anyone times it; the figure says its
    batch and threads."""
    factory, passes = slow_start(monkeypatch)
    predictor = PredictorCache(factory).get(tiny_bert)
    assert sum(passes.values()) == 1  # the warm-up, before any prediction
    [first] = predictor.predict_texts(["the movie was good"])
    _probs, _names, ms = predictor.predict(["a boring film"])
    # One tick of the fake clock: the timed pass alone (with the load, 300 000 ms).
    assert first.ms == pytest.approx(TICK_MS) and ms == pytest.approx(TICK_MS)
    assert first.threads == predictor.threads and first.threads >= 1
    unit = "thread" if first.threads == 1 else "threads"
    assert first.latency_text() == f"1.0 ms · batch 1, {first.threads} {unit}"
    assert replace(first, threads=None).latency_text() == "1.0 ms · batch 1"


def test_cache_loads_once_when_two_threads_ask_at_once(tmp_path):
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow(path):
        calls.append(path)
        started.set()
        release.wait(10)
        return _Fake(path)

    cache = PredictorCache(slow)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(tmp_path))) for _ in range(2)]
    threads[0].start()
    started.wait(10)
    threads[1].start()
    release.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and got[0] is got[1]


def _drain(gen):
    progress = []
    try:
        while True:
            progress.append(next(gen))
    except StopIteration as stop:
        return progress, stop.value


def test_compare_texts_counts_disagreements_in_chunks(tmp_path):
    cache = PredictorCache(lambda p: _Fake(p, flip=p.name == "b"))
    texts = ["a bad film", "a good film", "bad", "fine", "great"]
    progress, result = _drain(compare_texts(cache, tmp_path / "a", tmp_path / "b", texts, chunk=2))
    assert progress == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert isinstance(result, PairResult)
    assert result.disagreements == 5 and result.ms_a == 3.0
    assert result.probs_a.shape == (5, 2)


def test_pair_result_compares_other_names_by_class_id():
    probs = np.array([[0.9, 0.1], [0.1, 0.9]], np.float32)
    same_ids = PairResult(["x", "y"], probs, ["LABEL_0", "LABEL_1"], probs, ["neg", "pos"])
    assert same_ids.disagreements == 0
    by_name = PairResult(["x", "y"], probs, ["neg", "pos"], probs[:, ::-1], ["pos", "neg"])
    # The same count of classes under other names (or orders) is compared by class id.
    assert by_name.disagreements == 2


def test_a_split_prediction_stopped_part_way_leaves_its_thread_able_to_train(tiny_bert):
    """Compare's worker may stop a flips run between two batches and the pool thread
    then runs a job: the suspended generator must not hold inference mode (or the
    predictor's lock) on that thread, or the job's training computes no gradients."""
    import torch

    from slimpajama_gui.core.data.dataset import Split

    texts = [f"sentence number {i} is fine" for i in range(10)]
    split = Split("eval", texts, [i % 2 for i in range(10)], lines=list(range(2, 12)))
    predictor = ModelPredictor(tiny_bert, batch_size=4)
    gen = predictor.split_logits(split)
    assert next(gen) == (1, 3)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    assert predictor._lock.acquire(blocking=False)
    predictor._lock.release()
    rest = list(gen)  # the remaining batches, then the logits of every row in order
    assert rest == [(2, 3), (3, 3)]
    full = predictor.split_logits(split)
    while True:
        try:
            next(full)
        except StopIteration as end:
            logits = end.value
            break
    probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
    np.testing.assert_allclose(probs, predictor.predict(texts)[0], atol=1e-5)


# --------------------------------------------------------------------------- reading


def test_a_reading_counts_the_tokens_before_the_cut(tiny_bert):
    from transformers import AutoTokenizer

    predictor = ModelPredictor(tiny_bert, max_length=32)
    text = " ".join(["movie"] * 200)
    whole = len(AutoTokenizer.from_pretrained(tiny_bert)(text)["input_ids"])
    reading = predictor.reading(text)
    assert (reading.tokens, reading.read) == (whole, 32) and reading.truncated
    assert reading.unknown_words == ()
    assert reading.notes() == [
        f"Cut to 32 tokens of {whole}: the model reads only the start of this text."
    ]
    short = predictor.reading("the movie was good")
    assert not short.truncated and short.notes() == []


def _vocabulary_pruned(source: Path, folder: Path, texts: list[str]) -> Path:
    """``source`` with its vocabulary pruned to the words of ``texts`` by the engine."""
    from slimpajama_gui.core.model.encoder import EncoderClassifier
    from slimpajama_gui.core.techniques.prune.vocabulary import prune_vocabulary

    model = EncoderClassifier.from_pretrained(source)
    small, _report = prune_vocabulary(model, source, texts, folder / "tokenizer")
    return small.save_pretrained(folder / "model", tokenizer_from=folder / "tokenizer")


def test_a_reading_names_the_words_a_pruned_vocabulary_reads_as_unk(tiny_minilm, tmp_path):
    pruned = _vocabulary_pruned(tiny_minilm, tmp_path, TEXTS)
    text = "the movie was a xylophone concert, not funny at all"
    original = ModelPredictor(tiny_minilm).reading(text)
    assert original.unknown_words == () and original.notes() == []
    predictor = ModelPredictor(pruned)
    reading = predictor.reading(text)
    # The same words (and signs: the comma) as the pruned tokenizer reads as [UNK] alone.
    unk = predictor.tokenizer.unk_token
    words = re.findall(r"\w+|[^\w\s]", text)
    expected = tuple(w for w in words if unk in predictor.tokenizer.tokenize(w))
    assert expected and reading.unknown_words == expected
    assert "xylophone" in reading.unknown_words and "movie" not in reading.unknown_words
    (note,) = reading.notes()
    assert note.startswith(f"{len(expected)} word") and "xylophone" in note and "[UNK]" in note
    # Only the words the model reads count: cut before them, none is named.
    predictor.max_length = 4  # [CLS] the movie [SEP]
    assert predictor.reading(text).unknown_words == ()
