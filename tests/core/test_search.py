"""The budgeted search on a tiny model: stop, Cancel and time-out keep the best-so-far and
the Pareto set on disk; the same seed proposes the same chains; every trial is a variant."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from slimpajama_gui.core.jobs import search as search_mod
from slimpajama_gui.core.jobs.index import load_variants
from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, run
from slimpajama_gui.core.plan.fields import RecipeError
from slimpajama_gui.core.plan.recipe import load_recipe, recipe_from_yaml
from slimpajama_gui.core.plan.search_step import parse_duration, search_recipe
from slimpajama_gui.core.plan.steps import step_from_dict
from slimpajama_gui.core.runtime.predictor import ModelPredictor
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.techniques.hooks import Control

# Cheap trials: a 1-layer student or not, int8 or not; the size objective needs no timing.
SEARCH = (
    "{type: search, budget_points: 5, time_budget_s: 600, objective: size, seed: 7, "
    "techniques: [distill, vocabulary, quantize], max_trials: MAX}"
)


@pytest.fixture(autouse=True)
def short_training(monkeypatch):
    monkeypatch.setenv("SLIMPAJAMA_MAX_TRAIN_STEPS", "2")


@pytest.fixture
def store(tmp_path):
    with JobStore(tmp_path / "history.sqlite3") as s:
        yield s


def search_job(model: Path, output: Path, max_trials: int = 3, extra: str = ""):
    text = f"""
name: search-test
model: {model}
dataset:
  train: demo
  labels: [negative, positive]
  max_length: 32
output: {output}
steps:
  - {SEARCH.replace("MAX", str(max_trials))}
{extra}
"""
    return recipe_from_yaml(text, source="search.yaml", base_dir=output.parent)


class Events(PipelineCallbacks):
    """Records trial points; runs ``act(trial_number)`` when a trial's point arrives, and
    ``on_save(path)`` when a variant is saved."""

    def __init__(self, act=None, on_save=None) -> None:
        self.points: list[dict] = []
        self.saved: list[Path] = []
        self.act, self.on_save = act, on_save

    def on_eval(self, index, metrics):
        if "search/trial" in metrics:
            self.points.append(metrics)
            if self.act is not None:
                self.act(int(metrics["search/trial"]))

    def on_variant(self, index, path, record):
        self.saved.append(Path(path))
        if self.on_save is not None:
            self.on_save(Path(path))


def check_best_on_disk(output: Path, status: str) -> dict:
    """The state file reloads, names a best that exists and loads, and a Pareto set."""
    state = search_mod.load_state(output / "01-search")
    assert state["status"] == status
    done = [t for t in state["trials"] if t["state"] == "complete"]
    assert done, state["trials"]
    assert set(state["pareto"]) <= {t["number"] for t in done} and state["pareto"]
    best = state["best"]
    assert best["trial"] in {t["number"] for t in done}
    assert Path(best["path"]).is_dir()
    probs, labels, _ms = ModelPredictor(best["path"]).predict(["a good film"])
    assert probs.shape == (1, 2) and labels == ["negative", "positive"]
    return state


def test_search_finishes_with_best_pareto_and_every_trial_in_compare(tiny_minilm, tmp_path, store):
    events = Events()
    output = tmp_path / "out"
    result = run(search_job(tiny_minilm, output, 3, "  - {type: evaluate}"), events, store=store)
    assert result.status == "done", result.error
    state = check_best_on_disk(output, "done")
    assert len(state["trials"]) == 3
    # The best trial's model became the job's: the result, and what the evaluate measured.
    assert str(result.final) == state["best"]["path"]
    assert result.summary[-1]["step"] == "evaluate"
    assert result.summary[-1]["accuracy"] == pytest.approx(state["best"]["accuracy"])
    # One point per trial reached the callbacks; every saved variant is listed in Compare.
    assert [int(p["search/trial"]) for p in events.points] == [1, 2, 3]
    listed = {Path(v.path) for v in load_variants(store).variants}
    assert events.saved and set(events.saved) <= listed
    for trial in state["trials"]:
        for folder in trial["variants"]:
            assert Path(folder).is_dir()


def test_same_seed_proposes_the_same_chains(tiny_minilm, tmp_path, store):
    chains = []
    for name in ("a", "b"):
        output = tmp_path / name
        assert run(search_job(tiny_minilm, output, 4), store=store).status == "done"
        state = search_mod.load_state(output / "01-search")
        chains.append([t["params"] for t in state["trials"]])
    assert chains[0] == chains[1]
    assert len({str(p) for p in chains[0]}) == 4  # four different chains, none repeated


def test_cancel_returns_best_so_far_and_pareto(tiny_minilm, tmp_path, store):
    control = Control()
    output = tmp_path / "out"

    def cancel_in_trial_2(path: Path) -> None:
        if path.parent.name == "trial-002":
            control.request_stop()  # Cancel while trial 2 runs

    events = Events(on_save=cancel_in_trial_2)
    result = run(search_job(tiny_minilm, output, 5), events, control, store=store)
    assert result.status == "cancelled"
    state = check_best_on_disk(output, "cancelled")
    assert [t["state"] for t in state["trials"]] == ["complete", "interrupted"]
    assert str(result.final) == state["best"]["path"]  # the job's result is the best
    assert "cancelled" in state["sentence"]


def test_time_out_returns_best_so_far_and_pareto(tiny_minilm, tmp_path, store, monkeypatch):
    output = tmp_path / "out"
    offset = {"s": 0.0}
    real = time.monotonic

    class Clock:
        @staticmethod
        def monotonic() -> float:
            return real() + offset["s"]

    monkeypatch.setattr(search_mod, "time", Clock)

    def budget_ends_in_trial_2(path: Path) -> None:
        if path.parent.name == "trial-002":
            offset["s"] = 10_000.0  # the 600 s budget is over while trial 2 runs

    result = run(search_job(tiny_minilm, output, 5), Events(on_save=budget_ends_in_trial_2),
                 store=store)  # fmt: skip
    assert result.status == "done", result.error  # running out of time is not a failure
    state = check_best_on_disk(output, "timed_out")
    assert [t["state"] for t in state["trials"]] == ["complete", "interrupted"]
    assert "time budget" in state["sentence"]


def test_stop_from_keyboard_keeps_best_so_far(tiny_minilm, tmp_path, store):
    output = tmp_path / "out"

    def ctrl_c_in_trial_2(path: Path) -> None:
        if path.parent.name == "trial-002":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(search_job(tiny_minilm, output, 5), Events(on_save=ctrl_c_in_trial_2), store=store)
    state = check_best_on_disk(output, "stopped")
    assert state["trials"][-1]["state"] == "interrupted"


def test_hopeless_trials_are_pruned_and_the_start_is_returned(tiny_minilm, tmp_path, store,
                                                              monkeypatch):  # fmt: skip
    # A starting model at 100 % on dev: with no budget and no margin, any step that
    # measures below it ends its trial there.
    monkeypatch.setattr(search_mod, "accuracy", lambda ctx: 1.0)
    recipe = search_job(tiny_minilm, tmp_path / "out", 2)
    recipe.steps[0].budget_points = 0.0
    recipe.steps[0].prune_margin_points = 0.0
    recipe.steps[0].techniques = ["distill"]
    recipe.steps[0].depths = [1]
    result = run(recipe, Events(), store=store)
    assert result.status == "done", result.error
    state = search_mod.load_state(tmp_path / "out" / "01-search")
    assert [t["state"] for t in state["trials"]] == ["pruned"]  # one chain in the space
    assert "stopped after distill" in state["trials"][0]["note"]
    # Nothing finished: the starting model is what the search returns, said so.
    assert state["best"]["trial"] is None
    assert state["best"]["path"] == str(tiny_minilm)
    assert "starting model stays the result" in state["sentence"]


def test_pareto_and_best_pick():
    def trial(n, acc, ms, state="complete"):
        return search_mod.TrialResult(n, {}, "", [], state, acc, 100 * (0.9 - acc), ms, 1)

    trials = [trial(1, 0.90, 10.0), trial(2, 0.89, 5.0), trial(3, 0.85, 4.0),
              trial(4, 0.88, 6.0), trial(5, 0.95, 1.0, "pruned")]  # fmt: skip
    assert search_mod.pareto_set(trials, "latency") == [3, 2, 1]
    best, within = search_mod.pick_best(trials, "latency", 1.0)
    assert (best.number, within) == (2, True)
    best, within = search_mod.pick_best(trials[2:3], "latency", 1.0)
    assert (best.number, within) == (3, False)  # none within: the closest, said so


def test_student_layers_spread_and_keep_the_last():
    assert search_mod.kept_layers(3, 6) == [1, 3, 5]
    assert search_mod.kept_layers(2, 6)[-1] == 5
    assert search_mod.kept_layers(1, 6) == [5]
    assert len(search_mod.kept_layers(4, 6)) == 4


def test_settings_are_checked_with_sentences():
    assert parse_duration("30m") == 1800 and parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    with pytest.raises(ValueError, match="--time: 'half an hour' is not a duration"):
        parse_duration("half an hour", "--time")
    with pytest.raises(RecipeError, match="techniques"):
        step_from_dict({"type": "search", "techniques": []})
    with pytest.raises(RecipeError, match="budget_points"):
        step_from_dict({"type": "search", "budget_points": -1})


def test_search_recipe_replaces_the_compression_steps(tmp_path):
    preset = Path(__file__).resolve().parents[2] / "resources" / "recipes" / "preset-balanced.yaml"
    recipe = load_recipe(preset)
    searched, note = search_recipe(recipe, budget_points=0.5, objective="size", seed=3)
    assert [s.step_type for s in searched.steps] == ["finetune", "search", "evaluate", "benchmark"]
    step = searched.steps[1]
    assert (step.budget_points, step.objective, step.seed) == (0.5, "size", 3)
    assert searched.output.endswith("-search") and searched.output != recipe.output
    assert "became one search step" in note
    again, note = search_recipe(searched, max_trials=4)
    assert again.steps[1].max_trials == 4 and again.output == searched.output


def test_a_folder_the_search_did_not_write_is_refused(tiny_minilm, tmp_path, store):
    output = tmp_path / "out"
    (output / "01-search").mkdir(parents=True)
    (output / "01-search" / "notes.txt").write_text("mine")
    result = run(search_job(tiny_minilm, output, 1), store=store)
    assert result.status == "failed"
    assert "01-search already exists and was not written by a search" in result.error
    assert (output / "01-search" / "notes.txt").read_text() == "mine"
    shutil.rmtree(output)


def test_cli_search_prints_trials_and_best(tiny_minilm, tmp_path, capsys):
    from slimpajama_gui.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
name: cli-search
model: {tiny_minilm}
dataset: {{train: demo, labels: [negative, positive], max_length: 32}}
output: out
steps:
  - {{type: quantize, method: dynamic_int8}}
  - {{type: evaluate}}
""")
    code = main(["search", str(recipe), "--budget-points", "5", "--time", "10m",
                 "--objective", "size", "--seed", "2", "--max-trials", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "steps quantize became one search step" in out
    state = search_mod.load_state(tmp_path / "out-search" / "01-search")
    assert len(state["trials"]) == 2
    assert state["best"]["path"] and Path(state["best"]["path"]).is_dir()
    assert "Search trials (done)" in out and state["sentence"].split(":")[0] in out
    assert not (tmp_path / "out").exists()  # the recipe's own results are left alone


def test_cli_search_refuses_a_bad_duration(tiny_minilm, tmp_path, capsys):
    from slimpajama_gui.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
name: cli-search
model: {tiny_minilm}
dataset: {{train: demo, labels: [negative, positive]}}
output: out
steps: [{{type: evaluate}}]
""")
    assert main(["search", str(recipe), "--time", "soon"]) == 1
    assert "--time: 'soon' is not a duration" in capsys.readouterr().err


def test_chains_without_training_come_first(tiny_minilm, tmp_path, store):
    output = tmp_path / "out"
    assert run(search_job(tiny_minilm, output, 2), store=store).status == "done"
    state = search_mod.load_state(output / "01-search")
    first = [t["params"] for t in state["trials"]]
    # int8 in onnxruntime with and without vocabulary pruning: no training, a best early.
    assert [p["quantize"] for p in first] == ["onnxruntime", "onnxruntime"]
    assert [p["vocabulary"] for p in first] == [True, False]
    assert all(p["depth"] == 2 for p in first)  # the tiny model's own depth: no student
    assert all(s["type"] != "distill" for t in state["trials"] for s in t["steps"])


class _Report:
    """A sensitivity report's one answer the search asks."""

    def layers_to_keep(self, n: int) -> list[int]:
        return list(range(n))  # the first layers: not what an even spread keeps


def test_students_keep_the_layers_the_sensitivity_report_ranks_first():
    step = step_from_dict({"type": "search", "techniques": ["distill"]})
    params = {"depth": 3, "heads": 0.0, "ffn": 0.0, "vocabulary": False, "quantize": "none"}
    assert search_mod.chain_for(params, step, 6)[0].student_layers == [1, 3, 5]
    assert search_mod.chain_for(params, step, 6, _Report())[0].student_layers == [0, 1, 2]


def test_the_search_can_store_the_word_embeddings_in_4_bits():
    step = step_from_dict({"type": "search", "techniques": ["quantize"]})
    assert "onnxruntime-emb4" in search_mod.QUANTIZE_CHOICES
    params = {"depth": 6, "heads": 0.0, "ffn": 0.0, "vocabulary": False,
              "quantize": "onnxruntime-emb4"}  # fmt: skip
    (quant,) = search_mod.chain_for(params, step, 6)
    assert (quant.backend, quant.embedding_bits) == ("onnxruntime", 4)
    assert search_mod.describe_chain(params, 6) == "int8 (onnxruntime, 4-bit embeddings)"
    params["quantize"] = "onnxruntime"
    assert search_mod.chain_for(params, step, 6)[0].embedding_bits == 8


def test_a_sensitivity_step_before_the_search_chooses_the_students_layers(
    tiny_minilm, tmp_path, store
):
    from slimpajama_gui.core.techniques.sensitivity import find_report

    output = tmp_path / "out"
    recipe = recipe_from_yaml(f"""
name: sens-search
model: {tiny_minilm}
dataset: {{train: demo, labels: [negative, positive], max_length: 32}}
output: {output}
steps:
  - {{type: sensitivity, rows: 32, heads: false, ffn: false, linears: false}}
  - {{type: search, budget_points: 50, objective: size, techniques: [distill], depths: [1],
      max_trials: 1}}
""", source="search.yaml", base_dir=tmp_path)  # fmt: skip
    result = run(recipe, store=store)
    assert result.status == "done", result.error
    report = find_report(next(output.glob("01-*")))
    assert report is not None
    state = search_mod.load_state(output / "02-search")
    assert "sensitivity report" in state["student_layers"]
    distill = state["trials"][0]["steps"][0]
    assert distill["type"] == "distill"
    assert distill["student_layers"] == report.layers_to_keep(1)


def test_cancel_before_any_trial_still_names_the_starting_model(tiny_minilm, tmp_path, store,
                                                                 monkeypatch):  # fmt: skip
    control = Control()

    def cancelled_while_measuring(ctx):
        control.request_stop()  # Cancel while the starting model is measured
        ctx.check_stop()

    monkeypatch.setattr(search_mod, "accuracy", cancelled_while_measuring)
    output = tmp_path / "out"
    result = run(search_job(tiny_minilm, output, 3), Events(), control, store=store)
    assert result.status == "cancelled"
    state = search_mod.load_state(output / "01-search")
    assert state["status"] == "cancelled" and state["trials"] == []
    assert state["best"]["path"] == str(tiny_minilm)
    assert "starting model stays the result" in state["sentence"]
