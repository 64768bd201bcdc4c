"""The shared training loop, evaluation and benchmark on tiny models (no Qt)."""

from __future__ import annotations

import math
import random
import threading

import numpy as np
import pytest
import torch

from slimpajama_gui.core.model.config import EncoderConfig
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.runtime.bench import BenchConfig, TorchRunner, benchmark, count_parameters
from slimpajama_gui.core.runtime.evaluate import (
    Predictions,
    classification_report,
    predict,
    prediction_diff,
)
from slimpajama_gui.core.techniques.hooks import Callbacks, Control
from slimpajama_gui.core.techniques.train import NonFiniteLoss, TrainConfig, train
from tests.figures import in_order, measured

# A learnable toy task: the label says whether "good" (id 7) or "bad" (id 8) appears.
VOCAB, GOOD, BAD = 40, 7, 8


def toy_rows(n: int, seed: int) -> list[tuple[list[int], int]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.randrange(10, VOCAB) for _ in range(rng.randrange(3, 10))]
        words.insert(rng.randrange(len(words) + 1), GOOD if label else BAD)
        rows.append(([2, *words, 3], label))
    return rows


def to_batches(rows, batch_size: int, *, shuffle_seed: int | None = None):
    rows = list(rows)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(rows)
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, (tokens, _) in enumerate(chunk):
            ids[r, : len(tokens)] = torch.tensor(tokens)
            mask[r, : len(tokens)] = 1
        yield {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": torch.zeros_like(ids),
            "labels": torch.tensor([label for _, label in chunk]),
        }


def tiny_model(seed: int = 0) -> EncoderClassifier:
    torch.manual_seed(seed)
    config = EncoderConfig(
        vocab_size=VOCAB, hidden_size=32, layer_heads=[4, 4], head_dim=8, layer_ffn=[64, 64],
        max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0,
    )  # fmt: skip
    return EncoderClassifier(config)


class Recorder(Callbacks):
    def __init__(self) -> None:
        self.logs: list[dict] = []
        self.evals: list[dict] = []
        self.steps = 0
        self.ended: str | None = None

    def on_step_end(self, state) -> None:
        self.steps = state.step

    def on_log(self, state, metrics) -> None:
        self.logs.append(metrics)

    def on_evaluate(self, state, metrics) -> None:
        self.evals.append(metrics)

    def on_end(self, state, status) -> None:
        self.ended = status


TRAIN, EVAL = toy_rows(320, seed=1), toy_rows(80, seed=2)


def eval_accuracy(model, control=None) -> dict[str, float]:
    preds = predict(model, to_batches(EVAL, 40), control=control)
    return classification_report(preds, ["neg", "pos"]).metrics()


def test_training_lowers_the_loss_and_beats_chance():
    model = tiny_model()
    before = eval_accuracy(model)["accuracy"]
    rec = Recorder()
    config = TrainConfig(
        epochs=6, learning_rate=3e-3, batch_size=16, log_every_steps=5, warmup_ratio=0.1
    )
    result = train(
        model, lambda epoch: to_batches(TRAIN, 16, shuffle_seed=epoch), steps_per_epoch=20,
        config=config, eval_fn=eval_accuracy, callbacks=rec,
    )  # fmt: skip
    assert result.status == "done" and result.steps == 120 and rec.ended == "done"
    losses = [m["loss"] for m in rec.logs]
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3]), losses
    after = eval_accuracy(model)["accuracy"]
    assert after >= 0.9 > before + 0.2, (before, after)
    # The model ends with the best evaluated weights, and every epoch was evaluated.
    assert len(rec.evals) == 6 and math.isclose(after, result.best_metric)
    # The LR warms up then decays to ~0.
    lrs = [m["lr"] for m in rec.logs]
    assert max(lrs) == pytest.approx(3e-3, rel=0.1) and lrs[-1] < 1e-4


def test_training_is_deterministic_on_cpu():
    def run() -> torch.Tensor:
        model = tiny_model(seed=3)
        config = TrainConfig(epochs=1, learning_rate=1e-3, batch_size=16, seed=5)
        train(model, lambda e: to_batches(TRAIN, 16, shuffle_seed=e), 20, config)
        return model.classifier.weight.detach().clone()

    assert torch.equal(run(), run())


def test_nan_loss_stops_with_the_step_and_rolls_back():
    model = tiny_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    calls = {"n": 0}

    def exploding_loss(m, batch):
        calls["n"] += 1
        out = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss = torch.nn.functional.cross_entropy(out.logits, batch["labels"])
        if calls["n"] == 4:
            loss = loss * float("nan")
        return loss, {"loss": float(loss.detach())}

    config = TrainConfig(epochs=1, learning_rate=1e-3, batch_size=16, log_every_steps=100)
    rec = Recorder()
    with pytest.raises(NonFiniteLoss, match="step 4"):
        train(
            model,
            lambda e: to_batches(TRAIN, 16),
            20,
            config,
            loss_fn=exploding_loss,
            callbacks=rec,
        )
    assert rec.ended == "failed"
    # Rolled back to the last good snapshot (here: the start), never the NaN weights.
    for key, value in model.state_dict().items():
        assert torch.isfinite(value.float()).all()
        assert torch.equal(value, start[key])


def _request_stop_from_another_thread(control: Control) -> None:
    """As the GUI's Cancel does; joined, so the request is in before the caller goes on."""
    stopper = threading.Thread(target=control.request_stop)
    stopper.start()
    stopper.join()


def test_a_stop_request_ends_training_before_the_next_step():
    model = tiny_model()
    control = Control()
    steps: list[int] = []

    class StopAtStepFive(Recorder):
        def on_step_end(self, state) -> None:
            super().on_step_end(state)
            steps.append(state.step)
            if state.step == 5:
                _request_stop_from_another_thread(control)

    rec = StopAtStepFive()
    result = train(
        model,
        lambda epoch: to_batches(TRAIN, 16, shuffle_seed=epoch),
        20,
        TrainConfig(epochs=50),
        control=control,
        callbacks=rec,
    )
    assert result.status == "cancelled" and rec.ended == "cancelled"
    assert result.steps == 5 and steps == [1, 2, 3, 4, 5]  # 1,000 steps were planned
    assert all(torch.isfinite(v.float()).all() for v in model.state_dict().values())


def test_a_stop_request_during_evaluation_ends_it_before_the_next_batch():
    model = tiny_model()
    control = Control()
    eval_batches: list[int] = []

    def eval_fn(m, ctl):
        def batches():
            for n, batch in enumerate(to_batches(EVAL, 8), start=1):  # 10 batches
                eval_batches.append(n)
                if n == 2:
                    _request_stop_from_another_thread(control)
                yield batch

        preds = predict(m, batches(), control=ctl)
        return classification_report(preds, ["neg", "pos"]).metrics()

    rec = Recorder()
    config = TrainConfig(epochs=50, eval_every_steps=3)
    result = train(
        model,
        lambda epoch: to_batches(TRAIN, 16, shuffle_seed=epoch),
        20,
        config,
        eval_fn=eval_fn,
        control=control,
        callbacks=rec,
    )
    assert result.status == "cancelled" and rec.ended == "cancelled"
    # The batch already handed out may finish; no later one is read.
    assert eval_batches == [1, 2] and result.steps == 3
    assert rec.evals == []  # a cut-short evaluation is never reported as a result


def test_report_confusion_and_diff():
    logits_a = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    logits_b = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 1.0]], dtype=np.float32)
    labels = np.array([0, 1, 1, 1])
    a, b = Predictions(logits_a, labels), Predictions(logits_b, labels)
    report = classification_report(a, ["neg", "pos"])
    assert report.accuracy == 0.75 and report.confusion == [[1, 0], [1, 2]]
    assert report.per_class["pos"].recall == pytest.approx(2 / 3)
    assert report.per_class["neg"].precision == pytest.approx(0.5)
    assert report.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    diff = prediction_diff(a, b, ["w", "x", "y", "z"])
    assert [f.text for f in diff.flips] == ["x", "y"]
    assert diff.fixed == 1 and diff.broken == 1 and diff.agreement == 0.5


def test_benchmark_reports_what_it_measured():
    from transformers import AutoTokenizer

    from slimpajama_gui.core.model.catalog import packaged_minilm_path

    model = EncoderClassifier.from_pretrained(packaged_minilm_path(), num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path(), local_files_only=True)
    sentences = [
        f"this film is {w} and the plot is {v}"
        for w in ("great", "dull", "fine")
        for v in ("thin", "rich")
    ]
    config = BenchConfig(threads=2, warmup=10, repeats=6, throughput_batch=4)
    calls: list[int] = []  # batch size of every forward pass
    torch_runner = TorchRunner(model)

    def counting_runner(inputs):
        calls.append(len(inputs["input_ids"]))
        return torch_runner(inputs)

    counting_runner.name = torch_runner.name
    r = benchmark(counting_runner, tokenizer, sentences * 8, config, model=model)
    # The counts it reports are the calls it made: 10 warm-up and 48 x 6 timed calls at
    # batch 1, then one warm-up and 12 timed padded batches of 4. How fast they were is
    # benchmarks/bench_stability.py's business, not a unit test's.
    assert r.sentences == 48 and r.latency_samples == 48 * 6
    assert calls.count(1) == 10 + 48 * 6 and calls.count(4) == 1 + 12 and len(calls) == 311
    assert r.threads == 2 and r.throughput_batch == 4 and r.backend == "pytorch"
    assert measured(r.latency_p50_ms, r.latency_mean_ms, r.throughput_per_s)
    assert in_order(r.latency_p50_ms, r.latency_p95_ms)
    assert r.peak_rss_mb > 50  # the process holds torch and the model
    assert r.parameters == count_parameters(model)[0] == 22_713_986  # MiniLM + a 2-label head
    assert 0.99 * r.parameters < r.nonzero_parameters <= r.parameters
    assert "batch 1" in r.method and "2 threads" in r.method


def test_control_names_the_phase_that_cannot_stop_until_it_ends():
    control = Control()
    assert control.busy_with is None
    with pytest.raises(OSError), control.uncancellable("saving 01-finetune in step 1 of 2"):
        with control.uncancellable("writing model.safetensors"):
            assert control.busy_with == "writing model.safetensors"
        assert control.busy_with == "saving 01-finetune in step 1 of 2"
        raise OSError("disk full")
    assert control.busy_with is None  # also after the phase failed
    control.request_stop()
    assert control.should_stop and control.busy_with is None


def test_ema_is_the_warmed_up_average_of_every_step_and_is_what_ends_and_is_scored():
    """With ``ema_decay`` the loop ends with, evaluates and keeps the exponential moving
    average of the weights after each optimizer step (decay min(d, (1+n)/(10+n)) after n
    updates), not the last step's weights."""
    model = tiny_model(seed=4)
    seen: list[dict[str, torch.Tensor]] = []
    scored: list[torch.Tensor] = []

    class Keep(Callbacks):
        def on_step_end(self, state) -> None:
            seen.append({k: v.detach().clone() for k, v in model.named_parameters()})

    def scoring(m, control=None):
        scored.append(m.classifier.weight.detach().clone())
        return eval_accuracy(m, control)

    decay = 0.9
    config = TrainConfig(epochs=2, learning_rate=3e-3, batch_size=16, ema_decay=decay)
    result = train(
        model, lambda e: to_batches(TRAIN, 16, shuffle_seed=e), 20, config,
        eval_fn=scoring, callbacks=Keep(),
    )  # fmt: skip
    assert result.status == "done" and len(seen) == 40 and len(scored) == 2
    expected = dict(seen[0])
    averages = []
    for n, weights in enumerate(seen[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        expected = {k: d * expected[k] + (1 - d) * w for k, w in weights.items()}
        averages.append(expected)
    # Each epoch's evaluation scored the average at that step, not the trained weights.
    for at_step, weight in ((20, scored[0]), (40, scored[1])):
        torch.testing.assert_close(weight, averages[at_step - 2]["classifier.weight"])
        assert not torch.allclose(weight, seen[at_step - 1]["classifier.weight"])
    # The model ends holding the best-scored average.
    best = 0 if result.best_step == 20 else 1
    torch.testing.assert_close(model.classifier.weight, scored[best])
    assert eval_accuracy(model)["accuracy"] == pytest.approx(result.best_metric)


def test_ema_without_keep_best_ends_with_the_last_average():
    model = tiny_model(seed=4)
    last: dict[str, torch.Tensor] = {}

    class Keep(Callbacks):
        def on_step_end(self, state) -> None:
            last.update({k: v.detach().clone() for k, v in model.named_parameters()})

    config = TrainConfig(
        epochs=1, learning_rate=3e-3, batch_size=16, ema_decay=0.5, keep_best=False
    )
    train(model, lambda e: to_batches(TRAIN, 16), 20, config, callbacks=Keep())
    # An average of several steps' weights: not the last step's.
    assert not torch.allclose(model.classifier.weight, last["classifier.weight"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
