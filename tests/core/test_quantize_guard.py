"""The accuracy guard judges a loss against the eval set's own noise (McNemar), keeps the
best variant that passes instead of failing the job, and names only advice that applies."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from torch import nn

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.handlers import quantize as quantize_handlers
from slimpajama_gui.core.jobs.pipeline import run
from slimpajama_gui.core.runtime.evaluate import Predictions
from slimpajama_gui.core.runtime.onnx_runner import OnnxClassifier
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.techniques import train as train_mod
from slimpajama_gui.core.techniques.quantize.guard import (
    guard_quantization,
    judge_loss,
    mcnemar_p,
    smallest_detectable,
)

from .test_pipeline import FINETUNE, Recorder, make_recipe
from .test_quantize import SENSITIVE, tiny_model

# --------------------------------------------------------------------------- the test


def binomial_tail(b: int, c: int) -> float:
    """P(X >= b), X ~ Binomial(b + c, 1/2), summed term by term from the pmf."""
    n = b + c
    return sum(math.comb(n, k) * 0.5**k * 0.5 ** (n - k) for k in range(b, n + 1))


@pytest.mark.parametrize(("b", "c"), [(2, 0), (5, 0), (7, 2), (10, 3), (3, 5), (40, 25)])
def test_mcnemar_is_the_one_sided_binomial_tail_of_the_discordant_rows(b, c):
    assert mcnemar_p(b, c) == pytest.approx(binomial_tail(b, c), rel=1e-12)
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = scipy_stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue
    assert mcnemar_p(b, c) == pytest.approx(expected, rel=1e-9)


def test_no_discordant_rows_is_no_evidence_and_negative_counts_are_refused():
    assert mcnemar_p(0, 0) == 1.0
    with pytest.raises(ValueError):
        mcnemar_p(-1, 2)


def rows(n: int, right_to_wrong: int, wrong_to_right: int = 0):
    """Gold labels, float and int8 predictions of ``n`` rows (float right on the first
    ``n - 10``), with the given flips."""
    gold = np.ones(n, dtype=np.int64)
    ref = gold.copy()
    ref[n - 10 :] = 0  # 10 rows the float model gets wrong
    cand = ref.copy()
    cand[:right_to_wrong] = 0
    cand[n - 10 : n - 10 + wrong_to_right] = 1
    return ref, cand, gold


def test_two_flips_on_100_rows_are_noise_and_the_sentence_says_so():
    verdict = judge_loss(*rows(100, 2), tolerance=1.0, what="onnxruntime int8")
    assert verdict.drop_points == pytest.approx(2.0) and verdict.beyond_tolerance
    assert not verdict.significant and verdict.ok
    text = verdict.sentence()
    assert text.startswith("onnxruntime int8 changed 2 of 100 predictions")
    assert "−2.0 points" in text and "within noise" in text and "p = 0.25" in text
    assert "larger eval set" in text
    # 100 rows cannot show a 1-point loss at all: a warning, not a failure.
    assert verdict.underpowered
    warning = verdict.power_warning()
    assert warning.startswith("on 100 eval rows") and "5.0 points" in warning
    # Named as the wizard's field is, with the recipe's key: right in both front ends.
    assert "more than the Max. loss of 1.0 pt (quantize.tolerance)" in warning
    record = verdict.to_dict()
    assert record["passed"] is True and record["mcnemar_p"] == pytest.approx(0.25)
    assert record["warning"] == warning and record["verdict"] == text


def test_a_significant_loss_fails_and_a_large_set_detects_a_small_one():
    verdict = judge_loss(*rows(100, 8), tolerance=1.0)
    assert verdict.significant and not verdict.ok
    assert "beyond the noise of 100 eval rows" in verdict.sentence()
    # Flips that cancel out are no loss, however many.
    assert judge_loss(*rows(100, 5, 5), tolerance=1.0).ok
    # On 2,000 rows 60 right→wrong against 10 is a real 2.5-point loss.
    big = judge_loss(*rows(2000, 60, 10), tolerance=1.0)
    assert big.drop_points == pytest.approx(2.5) and big.significant and not big.ok
    assert not big.underpowered and big.power_warning() is None
    assert smallest_detectable(100) == 5 and smallest_detectable(100, alpha=0.01) == 7


def test_within_tolerance_needs_no_test():
    verdict = judge_loss(*rows(100, 1), tolerance=1.0)
    assert not verdict.beyond_tolerance and verdict.ok
    assert "within the Max. loss of 1.0 pt (quantize.tolerance)" in verdict.sentence()


# --------------------------------------------------------------------------- the guard


def predictions_of(flips_when_sensitive: int):
    """An evaluate giving 100 predictions: all right in float, ``flips`` wrong when the
    sensitive layer is quantized (what the tests measure is the guard's decision)."""
    gold = np.ones(100, dtype=np.int64)

    def evaluate(model: nn.Module) -> np.ndarray:
        pred = gold.copy()
        if type(model.get_submodule(SENSITIVE)) is not nn.Linear:
            pred[:flips_when_sensitive] = 0
        return pred

    return evaluate, gold


def test_guard_passes_a_within_noise_loss_without_keeping_anything_float():
    evaluate, gold = predictions_of(2)
    report = guard_quantization(tiny_model(), "dynamic_int8", evaluate, tolerance=1.0, labels=gold)
    assert report.ok and report.kept_float == [] and report.tried == []
    assert report.final == pytest.approx(0.98)  # 2 points lost, more than the tolerance
    assert "within noise" in report.verdict.sentence()


def test_guard_keeps_a_layer_float_for_a_significant_loss():
    evaluate, gold = predictions_of(10)
    report = guard_quantization(tiny_model(), "dynamic_int8", evaluate, tolerance=1.0, labels=gold)
    assert not report.first_verdict.ok
    assert report.ok and report.kept_float == [SENSITIVE]
    assert report.verdict.worse == 0 and report.final == pytest.approx(1.0)


# --------------------------------------------------------------------------- the job

QUANTIZE = "  - {type: quantize, method: dynamic_int8, backend: onnxruntime, tolerance: 1.0}\n"


def damage(monkeypatch, *, flips: int | None, tags=("",)):
    """Make the int8 ONNX models exported under ``tags`` change ``flips`` predictions the
    float model got right (None: every one), and no other: a stand-in for an int8 model
    with that accuracy, so the test decides what the guard sees."""
    real_export, real_predict = quantize_handlers._export, quantize_handlers.predict
    damaged: set[int] = set()
    reference: dict[str, Predictions] = {}

    def export(ctx, index, model, quantized, per_channel, tag="", **kwargs):
        out = real_export(ctx, index, model, quantized, per_channel, tag, **kwargs)
        if tag in tags:
            damaged.add(id(out[0]))
        return out

    def predict(model, batches, **kwargs):
        preds = real_predict(model, batches, **kwargs)
        if not isinstance(model, OnnxClassifier):
            reference["float"] = preds
            return preds
        if id(model) not in damaged:
            return preds
        ref = reference["float"]
        logits = ref.logits.copy()
        right = np.flatnonzero(ref.predicted == ref.labels)
        for row in right[:flips] if flips is not None else right:
            logits[row] = logits[row][::-1]
        return Predictions(logits, ref.labels.copy())

    monkeypatch.setattr(quantize_handlers, "_export", export)
    monkeypatch.setattr(quantize_handlers, "predict", predict)


def run_job(tiny_minilm, tmp_path, steps=QUANTIZE):
    rec = Recorder()
    recipe = make_recipe(tiny_minilm, tmp_path / "out", FINETUNE + steps + "  - type: evaluate\n")
    with JobStore(tmp_path / "h.sqlite3") as store:
        result = run(recipe, rec, store=store)
    return result, rec


def guard_record(result) -> dict:
    onnx = next(v for v in result.variants if v.name.endswith("-quantize"))
    return json.loads((onnx / "slimpajama.json").read_text())["onnx"]["accuracy_guard"]


def test_a_within_noise_int8_loss_finishes_the_job_and_says_why(tiny_minilm, tmp_path, monkeypatch):
    damage(monkeypatch, flips=2)
    result, rec = run_job(tiny_minilm, tmp_path)
    assert result.status == "done", result.error
    guard = guard_record(result)
    assert guard["kept"] == "onnxruntime int8"
    verdict = guard["onnxruntime"]
    assert verdict["right_to_wrong"] == 2 and verdict["wrong_to_right"] == 0
    assert verdict["passed"] and "within noise" in verdict["verdict"]
    assert "warning" in verdict  # 100 rows cannot show a 1-point loss
    assert verdict["verdict"] in rec.messages
    # Said as a warning: marked so to callbacks that take only messages.
    assert f"warning: {verdict['warning']}" in rec.messages
    # The quantize step's own figure is the judged one: two points below the float model.
    assert result.summary[1]["accuracy_drop"] == pytest.approx(2.0)


@pytest.mark.int8
def test_a_significant_int8_loss_falls_back_to_pytorch_int8_and_the_job_finishes(
    tiny_minilm, tmp_path, monkeypatch
):
    damage(monkeypatch, flips=None)
    result, rec = run_job(tiny_minilm, tmp_path)
    assert result.status == "done", result.error
    guard = guard_record(result)
    assert guard["kept"].startswith("pytorch dynamic_int8")
    assert not guard["onnxruntime"]["passed"] and guard["why"].startswith("onnxruntime int8 lost")
    assert guard["final"]["passed"] and isinstance(guard["kept_float"], list)
    assert any(m.startswith("kept PyTorch's dynamic_int8 model") for m in rec.messages)
    onnx = next(v for v in result.variants if v.name.endswith("-quantize"))
    assert (onnx / "model.onnx").is_file()
    record = json.loads((onnx / "slimpajama.json").read_text())
    assert record["weights_format"] == "onnx_int8"


@pytest.mark.int8
def test_when_nothing_passes_the_sentence_names_only_advice_that_applies(
    tiny_minilm, tmp_path, monkeypatch
):
    damage(monkeypatch, flips=None, tags=("", "pytorch-int8"))
    result, _ = run_job(tiny_minilm, tmp_path)
    assert result.status == "failed"
    error = result.error
    assert "beyond the noise" in error and "did not pass either" in error
    assert "per_channel" not in error  # the recipe already has it (the default)
    assert "raise the Max. loss (quantize.tolerance)" in error


@pytest.mark.int8
def test_a_per_tensor_loss_is_retried_per_channel_before_leaving_onnxruntime(
    tiny_minilm, tmp_path, monkeypatch
):
    damage(monkeypatch, flips=None)  # only the per-tensor export, as the recipe asked
    steps = QUANTIZE.replace("tolerance: 1.0", "tolerance: 1.0, per_channel: false")
    result, _ = run_job(tiny_minilm, tmp_path, steps)
    assert result.status == "done", result.error
    guard = guard_record(result)
    assert not guard["onnxruntime"]["passed"] and guard["onnxruntime_per_channel"]["passed"]
    assert guard["kept"] == "onnxruntime int8 per channel"


def test_per_channel_is_advised_only_when_it_was_off():
    report = guard_quantization(
        tiny_model(), "dynamic_int8", predictions_of(10)[0], tolerance=1.0,
        labels=np.ones(100, dtype=np.int64), candidates=[],
    )  # fmt: skip
    assert not report.ok
    off = quantize_handlers._guard_failure("dynamic_int8", report, 1.0, tried_per_channel=False)
    on = quantize_handlers._guard_failure("dynamic_int8", report, 1.0, tried_per_channel=True)
    assert "try 'per_channel: true'" in off and "per_channel" not in on
    assert "backend" not in on  # the pytorch backend is what ran: never advise it


# --------------------------------------------------------------------------- the cap


def test_the_step_cap_shortens_every_training_loop(tiny_minilm, tmp_path, monkeypatch):
    monkeypatch.setenv(train_mod.MAX_STEPS_ENV, "3")
    result, rec = run_job(tiny_minilm, tmp_path, steps="")
    assert result.status == "done", result.error
    record = json.loads((result.variants[0] / "slimpajama.json").read_text())
    assert record["metrics"]["training"]["train_steps"] == 3
    # The job's own log says so: its figures are a smoke run's, not the recipe's.
    assert any(train_mod.MAX_STEPS_ENV in m and "smoke run" in m for m in rec.messages)
    monkeypatch.setenv(train_mod.MAX_STEPS_ENV, "zero")
    with pytest.raises(UserError, match=train_mod.MAX_STEPS_ENV):
        train_mod.step_cap()


@pytest.mark.parametrize(
    ("flips", "fixed", "expected"),
    [
        (0, 4, "+4.00 points (no loss)"),
        (0, 0, "unchanged"),
        (3, 0, "−3.00 points, more than the Max. loss of 1.0 pt (quantize.tolerance)"),
    ],
)
def test_the_guard_says_a_rise_is_a_rise_and_a_drop_a_drop(flips, fixed, expected):
    """int8 went from 90 % to 94 % on these rows: the message must not read as a loss."""
    gold = np.ones(100, dtype=np.int64)

    def evaluate(model: nn.Module) -> np.ndarray:
        pred = gold.copy()
        pred[90:] = 0  # the float model gets the last 10 rows wrong
        if type(model.get_submodule(SENSITIVE)) is not nn.Linear:
            pred[:flips] = 0
            pred[90 : 90 + fixed] = 1
        return pred

    said: list[str] = []
    guard_quantization(
        tiny_model(), "dynamic_int8", evaluate, tolerance=1.0, labels=gold, candidates=[],
        log=said.append,
    )  # fmt: skip
    first = said[0]
    assert first.startswith("dynamic_int8: accuracy ") and expected in first
    accuracy = (90 - flips + fixed) / 100
    assert f"{100 * accuracy:.2f} % against 90.00 % in float" in first
    if fixed:
        assert "−" not in first and "tolerance" not in first
