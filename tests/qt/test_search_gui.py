"""'Find the best…' in the wizard makes a search chain; a search job run from the window
draws each trial on the live Pareto chart as it finishes, marks the best, lists every
trial's variants in Compare, and a Cancel still returns the best-so-far. Training is
capped (``SLIMPAJAMA_MAX_TRAIN_STEPS``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimpajama_gui.core.jobs.search import load_state, search_folder
from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.plan.search_step import Search
from slimpajama_gui.core.techniques.train import MAX_STEPS_ENV
from slimpajama_gui.qt.main_window import MainWindow
from slimpajama_gui.qt.wizard.techniques_page import SEARCH

from .test_wizard import click, go_next

JOB_TIMEOUT = 600_000
TIMEOUT = 60_000


@pytest.fixture
def window(qtbot, monkeypatch):
    monkeypatch.setenv(MAX_STEPS_ENV, "2")
    win = MainWindow()
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.models_view.scan_finished, timeout=TIMEOUT):
        win.show()
    win.models_view.select_path(packaged_minilm_path())
    yield win
    win.jobs_view.shutdown(timeout_s=30)


def test_find_the_best_in_the_wizard_builds_a_search_chain(qtbot, window):
    w = open_techniques(qtbot, window)
    tech = w.techniques_page
    click(qtbot, tech.preset_buttons[SEARCH])
    assert tech.search_box.isVisible() and not tech.scroll.isVisible()
    tech.search_budget.setValue(0.5)
    tech.search_minutes.setValue(45)
    tech.search_objective.setCurrentIndex(tech.search_objective.findData("size"))
    kinds = [s.step_type for s in tech.chain()]
    assert kinds == ["finetune", "search", "evaluate", "benchmark"]  # MiniLM has no head yet
    search = next(s for s in tech.chain() if isinstance(s, Search))
    assert (search.budget_points, search.time_budget_s, search.objective) == (0.5, 2700.0, "size")
    assert "Find the best within your accuracy budget" in tech.description.text()
    assert tech.isComplete()
    # The review estimates nothing the search decides: "after" is the trial it keeps.
    go_next(qtbot, w)
    go_next(qtbot, w)
    review = w.review_page
    assert review.estimate.searched
    assert review.headline.text().startswith("Size and speed depend on the trial the search")
    after = [review.table.item(r, 1).text() for r in range(review.table.rowCount())]
    assert after and set(after) == {"chosen by the search"}
    w.back()
    w.back()
    click(qtbot, tech.preset_buttons["balanced"])  # back to a preset: its chain, no search
    assert not tech.search_box.isVisible()
    assert "search" not in [s.step_type for s in tech.chain()]


def test_a_search_job_draws_its_trials_and_returns_its_best_when_cancelled(
    qtbot, window, tiny_minilm, tmp_path
):
    win = window
    w = open_techniques(qtbot, win)
    tech = w.techniques_page
    click(qtbot, tech.preset_buttons[SEARCH])
    tech.search_budget.setValue(5.0)
    tech.search_objective.setCurrentIndex(tech.search_objective.findData("size"))
    go_next(qtbot, w)
    go_next(qtbot, w)  # the settings and review pages: the recipe is complete
    # The wizard's recipe, on a tiny model so that trials take seconds.
    recipe = w.draft.recipe()
    recipe.model, recipe.output = str(tiny_minilm), str(tmp_path / "search-out")
    w.close()
    runner = win.jobs_view.runner
    chart = win.jobs_view.live_charts.search
    with qtbot.waitSignal(runner.job_started, timeout=TIMEOUT):
        win.jobs_view.submit(recipe)
    # Points arrive while the job runs; once a best exists, the user presses Cancel.
    qtbot.waitUntil(lambda: chart.best is not None, timeout=JOB_TIMEOUT)
    with qtbot.waitSignal(runner.job_finished, timeout=JOB_TIMEOUT) as done:
        runner.cancel()
    job_id, status, _error = done.args
    assert status == "cancelled"
    chart.flush()
    assert chart.isVisibleTo(win.jobs_view.live_charts)
    assert chart.trials and chart.best in chart.trials
    assert chart.count("within budget") + chart.count("over budget") == len(chart.trials)
    assert chart.count("best so far") == 1
    index = next(i for i, s in enumerate(recipe.steps) if s.step_type == "search")
    state = load_state(search_folder(Path(recipe.output), index))
    assert state["status"] == "cancelled" and state["best"]["trial"] == chart.best
    assert Path(state["best"]["path"]).is_dir()
    # Each finished trial's variants are in Compare (refreshed as they are saved).
    trial_paths = {Path(p) for t in state["trials"] if t["state"] == "complete"
                   for p in t["variants"]}  # fmt: skip
    assert trial_paths
    qtbot.waitUntil(
        lambda: trial_paths <= {Path(v.path) for v in win.compare_view.variants}, timeout=TIMEOUT
    )
    assert job_id == win.jobs_view.store.get_job(job_id).id


def open_techniques(qtbot, win):
    win.show_area("compress")
    click(qtbot, win.compress_page.new_button)
    w = win.compress_page.wizard
    qtbot.waitExposed(w)
    go_next(qtbot, w)
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)
    go_next(qtbot, w)
    return w
