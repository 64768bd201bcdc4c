"""Sensitivity analysis: each ablation equals the compression it stands for, the report
answers the compression steps' questions, the step saves it, and the guard uses it."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.handlers import quantize as quantize_handlers
from slimpajama_gui.core.jobs.handlers.sensitivity import sample_rows
from slimpajama_gui.core.jobs.pipeline import run
from slimpajama_gui.core.plan.recipe import RecipeError, step_from_dict
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.techniques import sensitivity as sens
from slimpajama_gui.core.techniques.hooks import Control
from slimpajama_gui.core.techniques.prune import drop_layers
from slimpajama_gui.core.techniques.prune.structured import StructureMasks, prune_structure
from slimpajama_gui.core.techniques.quantize import guard as guard_mod
from slimpajama_gui.core.techniques.quantize.methods import quantize_model

from .test_pipeline import Recorder, make_recipe
from .test_quantize import SENSITIVE, inputs, tiny_model
from .test_quantize_guard import predictions_of


@pytest.fixture
def store(tmp_path):
    with JobStore(tmp_path / "history.sqlite3") as s:
        yield s


def labelled_batches(model, n_batches: int = 3) -> list[dict[str, torch.Tensor]]:
    """Batches of random ids labelled by the model itself with a few labels flipped, so
    the baseline is neither perfect nor chance."""
    out = []
    for seed in range(1, n_batches + 1):
        batch = inputs(seed)
        batch.pop("token_type_ids", None)
        with torch.no_grad():
            labels = model(**batch).logits.argmax(-1)
        labels[0] = 1 - labels[0]
        out.append(dict(batch, labels=labels))
    return out


@torch.no_grad()
def loss_and_accuracy(model, batches) -> tuple[float, float]:
    logits = torch.cat([model(**{k: b[k] for k in ("input_ids", "attention_mask")}).logits
                        for b in batches])  # fmt: skip
    labels = torch.cat([b["labels"] for b in batches])
    return float(F.cross_entropy(logits, labels)), float(
        (logits.argmax(-1) == labels).float().mean()
    )


@pytest.fixture(scope="module")
def measured():
    model = tiny_model()
    batches = labelled_batches(model)
    before = copy.deepcopy(model.state_dict())
    events = []
    report = sens.measure_sensitivity(model, batches, on_measured=lambda m, r: events.append(m))
    return model, batches, report, events, before


def test_every_layer_head_ffn_and_linear_is_measured_once_in_order(measured):
    model, _, report, events, _ = measured
    assert report.complete and report.layer_heads == [4, 4] and report.rows == 12
    linears = sens.int8_candidates(model)
    assert len(events) == 2 + 8 + 2 + len(linears)
    assert [e.done for e in events] == list(range(1, len(events) + 1))
    assert {e.total for e in events} == {len(events)}
    assert [e.kind for e in events[:3]] == ["layer", "layer", "head"]
    assert all(e is not None for e in report.layers + report.ffn)
    assert all(e is not None for row in report.heads for e in row)
    assert set(report.linears) == set(linears) and "classifier" in linears


def test_the_model_is_unchanged_after_measuring(measured):
    model, _, _, _, before = measured
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(model.layers) == 2 and not model.layers[0].attention.output._forward_pre_hooks


def test_each_effect_is_what_the_real_compression_gives(measured):
    """Dropping a layer = drop_layers; a head or FFN = prune_structure; a linear = int8 it."""
    model, batches, report, _, _ = measured
    base_loss, base_acc = loss_and_accuracy(model, batches)
    assert report.baseline_loss == pytest.approx(base_loss, abs=1e-5)

    def check(effect, changed):
        loss, acc = loss_and_accuracy(changed, batches)
        assert effect.loss_change == pytest.approx(loss - base_loss, abs=1e-4)
        assert effect.accuracy_change == pytest.approx(acc - base_acc, abs=1e-6)

    with torch.no_grad():
        check(report.layers[1], drop_layers(model, [0]))
        heads = [torch.ones(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)]
        heads[1][2] = False
        full = [torch.ones(128, dtype=torch.bool), torch.ones(128, dtype=torch.bool)]
        check(report.heads[1][2], prune_structure(model, StructureMasks(heads, full)))
        ffn = [torch.ones(128, dtype=torch.bool), torch.zeros(128, dtype=torch.bool)]
        masks = StructureMasks([torch.ones(4, dtype=torch.bool)] * 2, ffn)
        check(report.ffn[1], prune_structure(model, masks))
        others = set(sens.int8_candidates(model)) - {SENSITIVE}
        int8 = quantize_model(model, "dynamic_int8", embeddings=False, skip=others).model
        check(report.linears[SENSITIVE], int8)
        check(report.layers[0], drop_layers(model, [1]))  # from the first layer's input
        others = set(sens.int8_candidates(model)) - {"classifier"}
        int8 = quantize_model(model, "dynamic_int8", embeddings=False, skip=others).model
        check(report.linears["classifier"], int8)  # from the last layer's output
    assert report.layers[1].loss_change != 0 and report.linears[SENSITIVE].kl > 0


def test_without_room_to_keep_layer_inputs_every_pass_runs_whole(monkeypatch):
    model = tiny_model()
    batches = labelled_batches(model)
    cached = sens.measure_sensitivity(model, batches)
    monkeypatch.setattr(sens, "CACHE_LIMIT_BYTES", 0)
    whole = sens.measure_sensitivity(model, batches)
    for a, b in zip(cached.layers + cached.ffn, whole.layers + whole.ffn, strict=True):
        assert a.loss_change == pytest.approx(b.loss_change, abs=1e-5)
    for name, effect in whole.linears.items():
        assert cached.linears[name].kl == pytest.approx(effect.kl, abs=1e-6)


def test_a_quantized_model_or_unlabelled_batches_are_refused():
    model = tiny_model()
    q = quantize_model(model, "dynamic_int8").model
    with pytest.raises(UserError, match="before the quantize step"):
        sens.measure_sensitivity(q, labelled_batches(model, 1))
    with pytest.raises(UserError, match="no labelled rows"):
        sens.measure_sensitivity(model, [inputs(1)])


def test_a_stop_check_ends_measuring_at_the_next_ablation():
    model = tiny_model()
    seen = []

    def check():
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sens.measure_sensitivity(
            model, labelled_batches(model, 1), on_measured=lambda m, r: seen.append(m), check=check
        )
    assert len(seen) == 3 and len(model.layers) == 2


# --------------------------------------------------------------------------- the questions


def made_report() -> sens.SensitivityReport:
    """Three layers of two heads with chosen costs (loss change = cost)."""
    r = sens.SensitivityReport.empty([2, 2, 2], rows=10, baseline_loss=0.3, baseline_accuracy=0.9)

    def e(loss, acc=0.0, kl=0.0):
        return sens.Effect(loss, acc, kl)

    for i, cost in enumerate([0.5, 0.01, 0.2]):
        r.add("layer", i, e(cost, -cost / 10))
    for (i, h), cost in {(0, 0): 0.3, (0, 1): 0.001, (1, 0): 0.002, (1, 1): 0.05,
                         (2, 0): 0.004, (2, 1): 0.1}.items():  # fmt: skip
        r.add("head", (i, h), e(cost))
    for i, cost in enumerate([0.4, 0.02, 0.03]):
        r.add("ffn", i, e(cost))
    r.add("linear", "layers.0.ffn.output", e(0.01, kl=0.2))
    r.add("linear", "layers.1.attention.query", e(0.0, kl=0.0))
    r.add("linear", "classifier", e(0.02, kl=0.05))
    r.complete = True
    return r


def test_layers_to_keep_are_the_costliest_to_drop_in_model_order():
    r = made_report()
    assert r.layers_to_keep(2) == [0, 2]
    assert r.layers_to_keep(1) == [0]
    assert r.layers_to_keep(3) == [0, 1, 2]
    with pytest.raises(ValueError):
        r.layers_to_keep(0)
    assert r.layers_to_keep(1, measure="accuracy") == [0]


def test_heads_to_remove_are_the_cheapest_share_of_all_heads():
    r = made_report()
    assert r.heads_to_remove(0.5) == {0: [1], 1: [0], 2: [0]}
    assert r.heads_to_remove(0.0) == {}
    assert sum(map(len, r.heads_to_remove(1.0).values())) == 6
    assert r.ffn_to_remove(1) == [1]


def test_linears_kept_float_are_those_int8_hurts_most_within_the_budget():
    r = made_report()
    assert r.linears_to_keep_float(1) == ["layers.0.ffn.output"]
    # A module int8 does not hurt is never worth keeping in float, whatever the budget.
    assert r.linears_to_keep_float(5) == ["layers.0.ffn.output", "classifier"]
    assert r.linears_to_keep_float(0) == []


def test_a_report_reloads_from_its_file_and_a_damaged_one_is_named(tmp_path):
    r = made_report()
    path = r.save(tmp_path)
    assert path.name == sens.REPORT_FILE
    again = sens.load_report(tmp_path)
    assert again == r
    assert sens.find_report(tmp_path) == r
    data = json.loads(path.read_text())
    data["heads"][1] = [None]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=str(path)) as err:
        sens.load_report(path)
    assert "run the sensitivity step again" in str(err.value)
    assert sens.find_report(tmp_path) is None
    with pytest.raises(UserError, match="does not exist"):
        sens.load_report(tmp_path / "nowhere")


def test_the_sample_is_seeded_and_never_larger_than_the_split():
    a, b = sample_rows(1000, 256, 7), sample_rows(1000, 256, 7)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 256 and (np.diff(a) > 0).all()
    assert not np.array_equal(a, sample_rows(1000, 256, 8))
    assert sample_rows(50, 256, 0).tolist() == list(range(50))


def test_the_step_checks_its_fields():
    step = step_from_dict({"type": "sensitivity", "rows": 128})
    assert (step.rows, step.split, step.heads) == (128, "eval", True)
    with pytest.raises(RecipeError, match="rows"):
        step_from_dict({"type": "sensitivity", "rows": 0})
    with pytest.raises(RecipeError, match="at least one"):
        step_from_dict(
            {"type": "sensitivity", "layers": False, "heads": False, "ffn": False,
             "linears": False}
        )  # fmt: skip


# --------------------------------------------------------------------------- the job


class SensitivityRecorder(Recorder):
    def __init__(self, stop_after: int | None = None, control: Control | None = None):
        super().__init__()
        self.measured: list[dict] = []
        self.progress: list[tuple[int, int]] = []
        self.stop_after, self.control = stop_after, control

    def on_sensitivity(self, index, measurement):
        self.measured.append(measurement)
        if self.stop_after is not None and len(self.measured) == self.stop_after:
            self.control.request_stop()

    def on_progress(self, index, done, total):
        self.progress.append((done, total))


SENSITIVITY = "  - {type: sensitivity, rows: 40, seed: 3, batch_size: 16}\n"


def test_the_step_measures_a_sample_sends_each_measurement_and_saves_the_report(
    tiny_minilm,
    tmp_path,
    store,
):
    out = tmp_path / "out"
    rec = SensitivityRecorder()
    result = run(make_recipe(tiny_minilm, out, SENSITIVITY), rec, store=store)
    assert result.status == "done", result.error
    report = sens.load_report(out / "01-sensitivity")
    assert report.complete and report.rows == 40 and report.seed == 3
    assert report.layer_heads == [4, 4]  # the tiny MiniLM-vocabulary model: 2 layers x 4
    total = 2 + 8 + 2 + len(report.linears)
    assert len(rec.measured) == total and rec.progress[-1] == (total, total)
    heads = [m for m in rec.measured if m["kind"] == "head"]
    assert heads[-1]["layer"] == 1 and heads[-1]["head"] == 3
    assert heads[-1]["loss_change"] == pytest.approx(report.heads[1][3].loss_change)
    assert result.summary[0]["report"] == str(out / "01-sensitivity" / "sensitivity.json")
    assert result.variants == []  # it measures; it saves no model
    # A second run into the same output replaces the report it wrote.
    again = run(make_recipe(tiny_minilm, out, SENSITIVITY), SensitivityRecorder(), store=store)
    assert again.status == "done", again.error
    assert sens.load_report(out / "01-sensitivity") == report  # same seed, same rows


def test_the_step_will_not_replace_a_folder_it_did_not_write(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    (out / "01-sensitivity").mkdir(parents=True)
    (out / "01-sensitivity" / "notes.txt").write_text("mine")
    result = run(make_recipe(tiny_minilm, out, SENSITIVITY), SensitivityRecorder(), store=store)
    assert result.status == "failed"
    assert "01-sensitivity" in result.error and "not written by a sensitivity step" in result.error
    assert (out / "01-sensitivity" / "notes.txt").read_text() == "mine"


def test_a_cancel_mid_step_stops_at_the_next_measurement_and_saves_nothing(
    tiny_minilm,
    tmp_path,
    store,
):
    out = tmp_path / "out"
    control = Control()
    rec = SensitivityRecorder(stop_after=3, control=control)
    result = run(make_recipe(tiny_minilm, out, SENSITIVITY), rec, control=control, store=store)
    assert result.status == "cancelled"
    assert len(rec.measured) == 3
    assert not (out / "01-sensitivity").exists()


def test_after_a_saved_variant_the_report_travels_with_it(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    steps = (
        "  - {type: prune, method: layers, keep_layers: [1], recovery_epochs: 0}\n" + SENSITIVITY
    )
    result = run(make_recipe(tiny_minilm, out, steps), SensitivityRecorder(), store=store)
    assert result.status == "done", result.error
    variant = out / "01-prune"
    assert sens.load_report(variant) == sens.load_report(out / "02-sensitivity")
    assert sens.load_report(variant).layer_heads == [4]
    record = json.loads((variant / "slimpajama.json").read_text())
    assert record["metrics"]["sensitivity"]["rows"] == 40


# --------------------------------------------------------------------------- the guard


def test_the_guard_takes_int8_costs_from_the_report_instead_of_measuring(monkeypatch):
    """Costs the report gives rank the candidates, and no candidate is quantized alone."""
    evaluate, gold = predictions_of(10)  # a significant loss until SENSITIVE is float
    model = tiny_model()
    sample = labelled_batches(model, 1)
    calls = []
    real = guard_mod.quantize_model
    monkeypatch.setattr(
        guard_mod, "quantize_model", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    names = guard_mod.quantizable_modules(model, True)
    # The report says a query costs most, SENSITIVE next: the guard tries them in that order.
    costs = {n: 0.001 for n in names}
    costs["layers.0.attention.query"], costs[SENSITIVE] = 0.9, 0.5
    report = guard_mod.guard_quantization(
        model, "dynamic_int8", evaluate, tolerance=1.0, labels=gold, sample=sample,
        known_costs=costs,
    )  # fmt: skip
    assert report.ok and report.sensitivity_measure == "kl (sensitivity report)"
    assert [name for name, _ in report.tried] == ["layers.0.attention.query", SENSITIVE]
    assert len(calls) == 3  # all int8, then one per module kept float; none to score
    assert report.sensitivity[SENSITIVE] == 0.5


def test_a_quantize_step_after_a_sensitivity_step_guards_with_its_report(
    tiny_minilm,
    tmp_path,
    store,
    monkeypatch,
):
    seen = []
    real = quantize_handlers.guard_quantization
    monkeypatch.setattr(
        quantize_handlers, "guard_quantization",
        lambda *a, **k: seen.append(k.get("known_costs")) or real(*a, **k),
    )  # fmt: skip
    out = tmp_path / "out"
    steps = SENSITIVITY + "  - {type: evaluate}\n  - {type: quantize, method: dynamic_int8}\n"
    result = run(make_recipe(tiny_minilm, out, steps), SensitivityRecorder(), store=store)
    assert result.status == "done", result.error
    saved = sens.load_report(out / "01-sensitivity")
    assert seen == [saved.linear_costs("kl")] and seen[0]

    # A step that changes the model in between makes the report stale: not used.
    seen.clear()
    out2 = tmp_path / "out2"
    steps = SENSITIVITY + (
        "  - {type: prune, method: heads, amount: 0.5, recovery_epochs: 0}\n"
        "  - {type: quantize, method: dynamic_int8}\n"
    )
    result = run(make_recipe(tiny_minilm, out2, steps), SensitivityRecorder(), store=store)
    assert result.status == "done", result.error
    assert seen == [None]


def test_report_costs_are_ignored_without_a_sample_to_compare_them_with():
    evaluate, gold = predictions_of(10)
    costs = {"layers.0.attention.query": 0.9}
    report = guard_mod.guard_quantization(
        tiny_model(), "dynamic_int8", evaluate, tolerance=1.0, labels=gold, known_costs=costs
    )
    assert report.sensitivity_measure == "accuracy" and report.kept_float == [SENSITIVE]
    assert not math.isclose(report.sensitivity["layers.0.attention.query"], 0.9)


def test_a_step_outside_the_recipe_gets_no_report(tmp_path):
    """A search trial numbers its chain from 0 and its steps are not the recipe's: the
    report of the recipe's sensitivity step (which measured the search's starting model,
    not the trial's) is not offered to it, and an index past the recipe is no crash."""
    from types import SimpleNamespace

    from slimpajama_gui.core.jobs.handlers.sensitivity import report_for_current_model
    from slimpajama_gui.core.plan.steps import Quantize, Sensitivity

    recipe_steps = [Sensitivity(rows=8), Quantize(method="dynamic_int8")]
    ctx = SimpleNamespace(
        recipe=SimpleNamespace(steps=recipe_steps), output=tmp_path, source=tmp_path, model=None
    )
    trial_step = Quantize(method="dynamic_int8")
    assert report_for_current_model(ctx, 1, trial_step) is None
    assert report_for_current_model(ctx, 5, trial_step) is None
    assert report_for_current_model(ctx, 5) is None
