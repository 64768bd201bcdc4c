"""'Find the best…' in the wizard runs a budgeted search as a job: its trials become
points of the live Pareto chart as they finish, the best is marked, and each trial's
variants are listed in Compare. Training is capped (``SLIMPAJAMA_MAX_TRAIN_STEPS``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QWizard

from slimpajama_gui.core.jobs.search import load_state, search_folder
from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.plan.recipe import recipe_from_yaml
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


def test_a_search_from_the_wizard_draws_its_trials_and_marks_the_best(qtbot, window):
    win = window
    win.show_area("compress")
    click(qtbot, win.compress_page.new_button)
    w = win.compress_page.wizard
    qtbot.waitExposed(w)
    go_next(qtbot, w)
    qtbot.waitUntil(w.data_page.isComplete, timeout=TIMEOUT)
    go_next(qtbot, w)
    tech = w.techniques_page
    click(qtbot, tech.preset_buttons[SEARCH])
    assert tech.search_box.isVisible() and not tech.scroll.isVisible()
    tech.search_budget.setValue(5.0)
    tech.search_minutes.setValue(2)
    tech.search_objective.setCurrentIndex(tech.search_objective.findData("size"))
    search = next(s for s in tech.chain() if isinstance(s, Search))
    assert (search.budget_points, search.time_budget_s, search.objective) == (5.0, 120.0, "size")
    assert "Find the best within your accuracy budget" in tech.description.text()
    go_next(qtbot, w)
    go_next(qtbot, w)
    runner = win.jobs_view.runner
    chart = win.jobs_view.live_charts.search
    with (
        qtbot.waitSignal(runner.job_finished, timeout=JOB_TIMEOUT) as done,
        qtbot.waitSignal(runner.job_started, timeout=TIMEOUT),
    ):
        click(qtbot, w.button(QWizard.WizardButton.FinishButton))
    job_id, status, error = done.args
    assert status == "done", error
    qtbot.waitUntil(lambda: chart.best is not None, timeout=TIMEOUT)
    chart.flush()
    # One point per finished trial, the best among them drawn as the star.
    assert chart.isVisibleTo(win.jobs_view.live_charts)
    assert chart.trials and chart.best in chart.trials
    assert chart.count("within budget") + chart.count("over budget") == len(chart.trials)
    assert chart.count("best so far") == 1
    job = win.jobs_view.store.get_job(job_id)
    steps = recipe_from_yaml(job.recipe_yaml, "the job's recipe").steps
    index = next(i for i, s in enumerate(steps) if s.step_type == "search")
    state = load_state(search_folder(Path(job.output), index))
    assert state["best"]["trial"] == chart.best
    # Each trial's saved variants are in Compare (refreshed as they are saved).
    trial_paths = {Path(p) for t in state["trials"] for p in t["variants"]}
    qtbot.waitUntil(
        lambda: trial_paths <= {Path(v.path) for v in win.compare_view.variants}, timeout=TIMEOUT
    )
