"""Pay the first-use imports of a job once, before any job runs.

A job's first optimizer (``torch.optim.AdamW.__init__`` imports ``torch._dynamo``,
which pulls in sympy and mpmath) and its first tokenizer (``AutoTokenizer`` walks
transformers' lazy import structure) import ~2 s of modules. Done on a job's worker
thread in the middle of the app's life, those imports held the GIL long enough to
freeze the window for 140-290 ms at a time (``benchmarks/gui_responsiveness.py``
before this module existed). The app calls :func:`warm_imports` once at start-up on a
worker thread, so the cost lands while the window appears, not while a person watches
a job.
"""

from __future__ import annotations

import contextlib
import importlib
import time

from slimpajama_gui.core.model.tokenizers import IMPORT_LOCK

#: What a job imports on first use that ``import slimpajama_gui.core.jobs.pipeline`` does not.
MODULES = (
    "torch._dynamo",
    "transformers.models.auto.tokenization_auto",
    "transformers.tokenization_utils_tokenizers",
    "transformers.models.bert.tokenization_bert",
)


def warm_imports(modules: tuple[str, ...] = MODULES) -> float:
    """Import ``modules`` (a no-op for those already imported); the seconds it took."""
    started = time.perf_counter()
    # Held throughout: a job starting meanwhile waits for it (pipeline.run) rather than
    # importing the same lazy transformers modules at the same time.
    with IMPORT_LOCK:
        for name in modules:
            # A module renamed in another transformers release is skipped: the job
            # imports what it needs itself; warming is only an optimisation.
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
    return time.perf_counter() - started
