"""The Playground's default pair of models: the original on the left, the newest result right.

Qt-free: it runs on a worker because it reads each result's ``slimpajama.json``. Compare
picks its own default pair from the job history; the two rules could become one beside
the results index in core.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slimpajama_gui.core.model.catalog import ModelInfo


def _read_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(path) / "slimpajama.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def choose_pair(infos: Sequence[ModelInfo]) -> tuple[Path | None, Path | None]:
    """The default (original, compressed) pair; reads ``slimpajama.json`` files.

    B is the newest result (by ``created_at``). A is, in order of preference, B's parent,
    the source model B came from, the first variant of B's job, any model that is not a
    result, or any other model; each only if it has a classifier head and is listed.
    """
    usable = [i for i in infos if i.num_labels]
    if not usable:
        return None, None
    by_path = {Path(i.path).resolve(): Path(i.path) for i in usable}

    def listed(value: Any) -> Path | None:
        if not value:
            return None
        try:
            return by_path.get(Path(str(value)).expanduser().resolve())
        except OSError:
            return None

    results = [(i, _read_result(i.path)) for i in usable if i.source == "result"]
    if not results:
        a = usable[0].path
        b = next((i.path for i in usable if i.path != a), a)
        return Path(a), Path(b)
    latest, meta = max(results, key=lambda r: str(r[1].get("created_at", "")))
    b = Path(latest.path)
    same_job = sorted(
        (m.get("step_index", 0), Path(i.path))
        for i, m in results
        if m.get("job_id") is not None and m.get("job_id") == meta.get("job_id")
    )
    candidates = [
        listed(meta.get("parent")),
        listed(meta.get("source_model")),
        next((p for _, p in same_job if p != b), None),
        next((Path(i.path) for i in usable if i.source != "result"), None),
        next((Path(i.path) for i in usable if Path(i.path) != b), None),
    ]
    a = next((c for c in candidates if c is not None and c != b), b)
    return a, b


__all__ = ["choose_pair"]
