"""How saved results are named in lists: ``"job › 02-distill"``, and two runs of one job
told apart by their output folder. Read by model inspection, the catalog and the results
index, so the Models list and Compare name a result the same way."""

from __future__ import annotations

from pathlib import Path

from slimpajama_gui.core.storage.variant import VariantRecord


def distinct_result_names(results: list[tuple[str, Path]]) -> list[str]:
    """``(name, folder)`` of results named as :func:`result_name` does; two runs of one
    job (same name, same steps) told apart by their output folder:
    ``"job (out-run2) › 02-distill"``. Other names are returned as they are."""
    count: dict[str, int] = {}
    for name, _folder in results:
        count[name] = count.get(name, 0) + 1
    out = []
    for name, folder in results:
        if count[name] > 1 and " › " in name:
            job, step = name.rsplit(" › ", 1)
            name = f"{job} ({Path(folder).parent.name}) › {step}"
        out.append(name)
    return out


def result_name(folder: Path) -> str:
    """A job's saved variant as people tell it apart: ``"preset-balanced › 01-finetune"``.

    Every job saves ``01-finetune``, ``02-distill``, ...; the step folder alone says
    nothing about which job made it. The job's name comes from the variant's record (its
    recipe), else from the output folder.
    """
    record = VariantRecord.read_or_none(folder)
    recipe = record.recipe if record is not None and isinstance(record.recipe, dict) else {}
    job = recipe.get("name") if isinstance(recipe.get("name"), str) else None
    return f"{job or folder.parent.name} › {folder.name}"
