"""The sensitivity step: what each layer, head, FFN block and linear is worth, measured.

It changes nothing: it samples ``rows`` rows of one split (seeded), tokenizes them once,
and runs :func:`~slimpajama_gui.core.techniques.sensitivity.measure_sensitivity`, sending
each measurement as a progress event (``on_progress``, and ``on_sensitivity`` for
callbacks that draw it live). The report is saved as ``OUTPUT/NN-sensitivity/
sensitivity.json`` (the step's own folder, found from the recipe alone), and, once the
job has saved a variant, also beside that variant's ``slimpajama.json``, so the report
travels with the model it measured; the variant's record gets a short summary. A source
model's folder is never written.

Later steps read it back with :func:`report_for_current_model`: the quantize guard takes
its int8 costs instead of measuring every module again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.context import JobContext, handles
from slimpajama_gui.core.jobs.saving import MEASURING_STEPS, add_figures, variant_folder
from slimpajama_gui.core.plan.recipe import Step
from slimpajama_gui.core.plan.steps import Sensitivity
from slimpajama_gui.core.storage.atomic import atomic_dir
from slimpajama_gui.core.techniques.sensitivity import (
    REPORT_FILE,
    Measurement,
    SensitivityReport,
    find_report,
    measure_sensitivity,
)

#: Steps that leave the model as it was, so a report measured before them still holds.
_UNCHANGING = frozenset(MEASURING_STEPS | {"sensitivity"})


def report_folder(output: Path, index: int, step: Step) -> Path:
    """Where step ``index`` (a sensitivity step) saves its report: ``OUTPUT/NN-sensitivity``."""
    return variant_folder(output, index, step)


def sample_rows(n: int, rows: int, seed: int) -> np.ndarray:
    """``min(rows, n)`` distinct row numbers of ``0..n-1``, sorted; the same for a seed."""
    if rows >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))


def sample_batches(
    ctx: JobContext, split: str, rows: int, seed: int, batch_size: int
) -> list[dict[str, Any]]:
    """Padded, labelled batches of ``min(rows, N)`` rows of ``split``, sampled with ``seed``
    and tokenized once (reused by every measurement), in length order.

    Raises:
        UserError: the dataset has no such split.
    """
    encoded = ctx.encoded(split)
    labels_of = ctx.split(split).labels
    chosen = sample_rows(len(encoded), rows, seed)
    subset = data_mod.Encoded(
        input_ids=[encoded.input_ids[i] for i in chosen],
        token_type_ids=None
        if encoded.token_type_ids is None
        else [encoded.token_type_ids[i] for i in chosen],
        max_length=encoded.max_length,
    )
    labels = [labels_of[i] for i in chosen]
    return list(
        data_mod.batches(
            subset, labels, batch_size, shuffle=False, seed=0, pad_id=ctx.pad_id,
            sort_by_length=True,
        )
    )  # fmt: skip


@handles("sensitivity")
def sensitivity(ctx: JobContext, index: int, step: Sensitivity) -> dict[str, Any]:
    """Measure the current model's sensitivity on a sample of ``step.split``; save the report."""
    if getattr(ctx.model, "quantization", None) is not None:
        raise UserError(
            f"step {index + 1} 'sensitivity': the model is already quantized "
            f"({ctx.model.quantization.method}); put the sensitivity step before the "
            "quantize step, where the model is still in float."
        )
    target = report_folder(ctx.output, index, step)
    _check_target(target)
    batches = sample_batches(ctx, step.split, step.rows, step.seed, step.batch_size)
    kinds = [k for k, on in (("layer", step.layers), ("head", step.heads),
                             ("ffn", step.ffn), ("linear", step.linears)) if on]  # fmt: skip
    ctx.model.to(ctx.device)
    hook = getattr(ctx.callbacks, "on_sensitivity", None)

    def measured(m: Measurement, _report: SensitivityReport) -> None:
        ctx.callbacks.on_progress(index, m.done, m.total)
        if hook is not None:
            hook(index, m.to_event())

    report = measure_sensitivity(
        ctx.model, batches, kinds=kinds, split=step.split, seed=step.seed,
        on_measured=measured, check=ctx.check_stop,
    )  # fmt: skip
    ctx.check_stop()
    with ctx.uncancellable(f"saving {target.name}"):
        with atomic_dir(target, check_target=_check_target) as staging:
            report.save(staging)
        if ctx.variant is not None:
            report.save(ctx.variant)
    summary = _summary(report, target / REPORT_FILE)
    ctx.store.log_metrics(
        ctx.job_id, index, "sensitivity",
        {"sensitivity_rows": report.rows, "sensitivity_baseline_loss": report.baseline_loss,
         "sensitivity_baseline_accuracy": report.baseline_accuracy},
    )  # fmt: skip
    add_figures(ctx, "sensitivity", summary)
    return summary


def _summary(report: SensitivityReport, path: Path) -> dict[str, Any]:
    """The step's summary row: where the report is and the most costly parts."""
    out: dict[str, Any] = {
        "report": str(path),
        "rows": report.rows,
        "baseline_accuracy": report.baseline_accuracy,
        "baseline_loss": report.baseline_loss,
    }
    for kind in ("layer", "head", "ffn", "linear"):
        worst = report.most_sensitive(kind, 1)
        if worst:
            key, effect = worst[0]
            name = f"{key[0]}.{key[1]}" if kind == "head" else str(key)
            out[f"most_sensitive_{kind}"] = name
            out[f"most_sensitive_{kind}_loss_change"] = effect.loss_change
    return out


def _check_target(target: Path) -> None:
    """Replace only a folder this step wrote: absent, or holding our report and nothing else."""
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise UserError(
            f"{target} is a file or link that SlimPajama Studio did not make, so the "
            "sensitivity step will not replace it; move it, or set the recipe's output to "
            "a new folder."
        )
    names = {p.name for p in target.iterdir()}
    if names and (names != {REPORT_FILE} or find_report(target) is None):
        raise UserError(
            f"{target} already exists and was not written by a sensitivity step, so the job "
            "will not replace it; move or rename that folder, or set the recipe's output "
            "to a new folder."
        )


def report_for_current_model(
    ctx: JobContext, index: int, step: Step | None = None
) -> SensitivityReport | None:
    """The saved report that measured the model step ``index`` starts from, or None.

    ``step``, when given, must be the recipe's step ``index``: a step that is not (one
    of a search trial's chain, numbered within the trial) gets None, because the
    recipe's earlier steps are not what made its model.

    That is the last sensitivity step before ``index`` with only model-preserving steps
    (evaluate, benchmark, sensitivity) between it and ``index``; failing one, a report
    saved in the folder the current model was loaded from (a variant of an earlier job
    that ran a sensitivity step). A report that does not match the model's layers and
    heads is ignored.
    """
    steps = ctx.recipe.steps
    if index > len(steps) or (
        step is not None and (index >= len(steps) or steps[index] is not step)
    ):
        return None
    found: SensitivityReport | None = None
    for i in range(index - 1, -1, -1):
        if steps[i].step_type == "sensitivity":
            found = find_report(report_folder(ctx.output, i, steps[i]))
            break
        if steps[i].step_type not in _UNCHANGING:
            return None
    if found is None and not any(s.step_type not in _UNCHANGING for s in steps[:index]):
        found = find_report(ctx.source)
    layers = getattr(ctx.model, "layers", None)
    if found is None or layers is None:
        return None
    heads = [int(layer.attention.num_heads) for layer in layers]
    return found if found.layer_heads == heads else None


def job_reports(output: Path | str | None, recipe_yaml: str) -> list[Path]:
    """The saved reports of a job's sensitivity steps that exist, in step order.

    ``recipe_yaml`` is the job's recipe as the history stores it; only its ``steps``'
    types are read (``yaml.safe_load``), so a recipe this app version would refuse
    still shows its reports. Unreadable text gives no reports.
    """
    import yaml

    if not output:
        return []
    try:
        data = yaml.safe_load(recipe_yaml or "")
    except yaml.YAMLError:
        return []
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, list):
        return []
    found = []
    for i, step in enumerate(steps):
        if isinstance(step, dict) and step.get("type") == "sensitivity":
            path = Path(output) / f"{i + 1:02d}-sensitivity" / REPORT_FILE
            if path.is_file():
                found.append(path)
    return found
