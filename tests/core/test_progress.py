"""A job's progress is weighted by what each step costs, and its time left is measured."""

from __future__ import annotations

import time

import pytest

from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, run
from slimpajama_gui.core.jobs.progress import BLEND_SHARE, MIN_MEASURE_S, JobProgress
from slimpajama_gui.core.plan.estimate import StepWork, step_work
from slimpajama_gui.core.plan.steps import Benchmark, Distill, Evaluate, FineTune, Prune, Quantize
from slimpajama_gui.core.storage.history import JobStore
from tests.core.test_pipeline import make_recipe


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_training_step_weighs_more_than_a_quick_one():
    """Fine-tuning 440 rows for 3 epochs costs far more than evaluating 100 rows."""
    steps = [FineTune(epochs=3), Evaluate(), Quantize(), Benchmark(sentences=20, repeats=2)]
    work = step_work(steps, parameters=10_000_000, layers=6, train_rows=440, eval_rows=100)
    total = sum(w.units for w in work)
    assert work[0].units / total > 0.9
    assert max(w.units for w in work[1:]) < 0.05 * work[0].units


def test_time_left_is_none_until_measured_then_follows_the_step_rate():
    clock = FakeClock()
    progress = JobProgress(clock=clock)
    progress.plan([StepWork(9e9), StepWork(1e9)])
    progress.start_step(0)
    assert progress.snapshot().remaining_s is None  # nothing measured: "estimating…"
    clock.now += 1.0
    progress.update(0, 10, 100)
    early = progress.snapshot()
    assert early.remaining_s is None and early.fraction == pytest.approx(0.09)
    clock.now += MIN_MEASURE_S
    progress.update(0, 20, 100)
    snap = progress.snapshot()
    # 20 % of step 1 took 3 s: 12 s more for it, and step 2 at the same speed (1/9 of 15 s).
    assert not snap.measured or snap.remaining_s is not None
    assert snap.remaining_s == pytest.approx(12 + 15 / 9, rel=1e-6)
    assert snap.measured  # step 2's share of that is small
    clock.now += 1.0
    progress.update(0, 96, 100)
    # Near the end of step 1 most of what is left is step 2, which is only costed.
    assert not progress.snapshot().measured
    assert snap.fraction == pytest.approx(3 / (3 + 12 + 15 / 9), rel=1e-6)
    clock.now += 11
    progress.end_step(0)
    assert not progress.snapshot().measured  # between steps: all of it is costed
    progress.start_step(1)
    after = progress.snapshot()
    # Step 2 has no progress of its own yet: its time left is an estimate (from step 1's rate).
    assert after.measured is False and after.remaining_s == pytest.approx(15 / 9, rel=1e-6)
    assert after.fraction == pytest.approx(15 / (15 + 15 / 9), rel=1e-6)


def _finished_first_step(clock: FakeClock) -> JobProgress:
    """Step 1 (1e9 units) ran in 10 s; step 2 (3e9 units) is costed at 30 s."""
    progress = JobProgress(clock=clock)
    progress.plan([StepWork(1e9), StepWork(3e9)])
    progress.start_step(0)
    clock.now += 10
    progress.end_step(0)
    progress.start_step(1)
    return progress


def test_the_bar_never_goes_back_when_a_step_slows_down():
    """A distillation whose first batches ran fast and later ones slowly (another program
    took the CPU): its time left grows, and the bar waits instead of moving back (a new
    user saw 50 % become 41 % in such a step)."""
    clock = FakeClock()
    progress = _finished_first_step(clock)
    fractions, lefts = [], []
    for done, seconds in [(2, 1.0), (10, 2.0), (20, 1.0), (40, 2.0), (60, 20.0), (80, 20.0)]:
        clock.now += seconds
        progress.update(1, done, 220)
        snap = progress.snapshot()
        fractions.append(snap.fraction)
        lefts.append(snap.remaining_s)
    assert fractions == sorted(fractions), fractions
    # The slowdown shows as more time left, not as a shorter bar.
    assert lefts[-1] > lefts[3], lefts
    clock.now += 60
    progress.update(1, 220, 220)
    progress.end_step(1)
    assert progress.snapshot().fraction == pytest.approx(1.0)


def test_a_fast_first_batch_does_not_throw_the_bar_forwards():
    """4 % of the phase done in 2 s (so its own rate says 48 s left, against 30 s costed):
    its rate counts for a fifth of the blend until BLEND_SHARE of the phase is done."""
    clock = FakeClock()
    progress = _finished_first_step(clock)
    clock.now += MIN_MEASURE_S
    progress.update(1, 4, 100)
    snap = progress.snapshot()
    own, costed = 2.0 * 96 / 4, 30.0 - 2.0
    weight = 0.04 / BLEND_SHARE
    assert snap.remaining_s == pytest.approx(weight * own + (1 - weight) * costed)
    assert snap.measured
    clock.now += 8.0
    progress.update(1, 40, 100)  # past BLEND_SHARE: the phase's own rate alone
    assert progress.snapshot().remaining_s == pytest.approx(10.0 * 60 / 40)


class Timeline(PipelineCallbacks):
    """(time, event, value) of a real job, from its own callbacks."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, object]] = []

    def on_job_start(self, job_id, recipe):
        self.events.append((time.monotonic(), "job", job_id))

    def on_step_start(self, index, step, count):
        self.events.append((time.monotonic(), "boundary", index))

    def on_step_end(self, index, step, summary):
        self.events.append((time.monotonic(), "boundary", index + 1))

    def on_overall(self, fraction, remaining_s, measured):
        self.events.append((time.monotonic(), "overall", (fraction, remaining_s, measured)))

    def on_end(self, status, error):
        self.events.append((time.monotonic(), "end", status))


FINETUNE_QUANTIZE = """
  - {type: finetune, epochs: 4, learning_rate: 3.0e-3, batch_size: 16, log_every_steps: 5, seed: 1}
  - {type: quantize, method: dynamic_int8, tolerance: 100}
"""


def test_progress_tracks_the_share_of_time_at_each_step_boundary(tiny_minilm, tmp_path):
    """Fine-tune + quantize: the bar never goes back, starts at 0, ends at 1, and the
    fine-tune (nearly all of this job's cost) holds most of it. How closely it follows the
    job's time is a speed figure, measured by benchmarks/presets_demo.py, not asserted here
    (a load spike on a shared CPU would move it)."""
    timeline = Timeline()
    with JobStore(tmp_path / "history.sqlite3") as store:
        result = run(
            make_recipe(tiny_minilm, tmp_path / "out", FINETUNE_QUANTIZE), timeline, store=store
        )
        assert result.status == "done", result.error
        assert store.get_job(result.job_id).progress == pytest.approx(1.0)
    events = timeline.events
    start = next(t for t, kind, _ in events if kind == "job")
    end = next(t for t, kind, _ in events if kind == "end")
    checked = []
    for i, (_t, kind, _value) in enumerate(events):
        if kind != "boundary":
            continue
        # The job's progress as sent right after the boundary.
        t, _, (fraction, _, _) = next(e for e in events[i:] if e[1] == "overall")
        elapsed = (t - start) / (end - start)
        checked.append((round(fraction, 3), round(elapsed, 3)))
    print("boundaries (progress, elapsed share):", checked)
    assert len(checked) == 4  # before and after each of the two steps
    progress = [fraction for fraction, _ in checked]
    assert progress == sorted(progress), checked
    assert progress[0] == pytest.approx(0.0, abs=0.01) and progress[-1] == pytest.approx(1.0)
    assert progress[1] > 0.5, checked  # the fine-tune's end: most of the job's cost is done
    overall = [value for _, kind, value in events if kind == "overall"]
    # Time left is claimed only once measured, and the fine-tune's own rate measures it.
    assert overall[0][1] is None
    assert any(measured and left is not None for _, left, measured in overall)
    fractions = [f for f, _, _ in overall]
    assert fractions[-1] == pytest.approx(1.0)


def test_vocabulary_pruning_has_no_recovery_training_to_weigh():
    """Only structural pruning trains afterwards; the vocabulary step never does."""
    kw = dict(parameters=10_000_000, layers=6, train_rows=440, eval_rows=100)
    vocab, heads = step_work([Prune(method="vocabulary"), Prune(method="heads")], **kw)
    [finetune] = step_work([FineTune(epochs=1)], **kw)
    assert vocab.units < 0.1 * finetune.units < heads.units


def test_augmented_copies_weigh_as_more_training_rows():
    """A distillation with one augmented copy of each row trains on twice the rows and
    runs the teacher over them once: its share of the job's progress bar grows."""
    kw = dict(parameters=10_000_000, layers=6, train_rows=440, eval_rows=100)
    [plain] = step_work([Distill(student_layers=[0, 1, 2, 5], epochs=4)], **kw)
    [doubled] = step_work([Distill(student_layers=[0, 1, 2, 5], epochs=4, augment=1)], **kw)
    [eight] = step_work([Distill(student_layers=[0, 1, 2, 5], epochs=8)], **kw)
    assert plain.units < doubled.units
    # Twice the rows for 4 epochs is as much training as the rows for 8, plus one more
    # teacher pass over the copies.
    assert doubled.units > eight.units


def test_a_hidden_state_loss_weighs_a_teacher_pass_every_epoch():
    """Logits are cached once; the hidden-state loss needs the teacher on every batch, so
    a 4-epoch distillation with it runs the teacher over the rows 4 times, not once."""
    kw = dict(parameters=10_000_000, layers=6, train_rows=440, eval_rows=100)
    [logits] = step_work([Distill(student_layers=[0, 1, 2, 5], epochs=4)], **kw)
    [hidden] = step_work([Distill(student_layers=[0, 1, 2, 5], epochs=4, hidden_mse=1.0)], **kw)
    [attention] = step_work(
        [Distill(student_layers=[0, 1, 2, 5], epochs=4, attention_mse=1.0)], **kw
    )
    three_more_teacher_passes = 3 * 10_000_000 * 440
    assert hidden.units - logits.units == pytest.approx(three_more_teacher_passes)
    assert attention.units == pytest.approx(hidden.units)
