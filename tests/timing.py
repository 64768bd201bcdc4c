"""A fake clock for latency tests: what a figure includes is checked without a real clock.

:func:`slow_start` makes loading a model and its first forward pass slow on a
:class:`FakeClock` that stands in for ``time.perf_counter`` in
:mod:`slimpajama_gui.core.runtime.predictor`: a latency that included either would be
hundreds of seconds, one that does not is exactly one tick. A busy machine makes such a
test slower, never wrong.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

from slimpajama_gui.core.runtime import predictor as predictor_mod
from slimpajama_gui.core.runtime.predictor import ModelPredictor

#: Milliseconds between two readings of a :class:`FakeClock`: a timed pass with nothing
#: else in it reports this.
TICK_MS = 1.0


class FakeClock:
    """``time.perf_counter`` for the predictor module: each reading is :data:`TICK_MS`
    after the last, and :meth:`spend` makes time pass (a slow load, a slow first pass)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def perf_counter(self) -> float:
        with self._lock:
            self.now += TICK_MS / 1000
            return self.now

    def spend(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def slow_start(monkeypatch, load_s: float = 100.0, first_pass_s: float = 200.0):
    """A factory whose loading takes ``load_s`` and whose model's first forward pass takes
    ``first_pass_s`` more (one-time start-up), both on a :class:`FakeClock`; returns
    ``(factory, passes)``, ``passes`` counting forward passes by model (``id``)."""
    clock = FakeClock()
    monkeypatch.setattr(predictor_mod, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    real_logits = predictor_mod.row_logits
    passes: dict[int, int] = {}

    def row_logits(model, *args):
        if not passes.get(id(model)):
            clock.spend(first_pass_s)
        passes[id(model)] = passes.get(id(model), 0) + 1
        return real_logits(model, *args)

    monkeypatch.setattr(predictor_mod, "row_logits", row_logits)

    def factory(path):
        clock.spend(load_s)
        return ModelPredictor(path)

    return factory, passes


class ColdPasses:
    """A factory whose models pay a start-up cost (``cold_s`` on a :class:`FakeClock`) on
    each input length they have not read yet, and on the first pass after :meth:`chill`.

    That is what stays cold after the warm-up at load: a pass on a new shape sets up its
    buffers, and a model left idle while others loaded or ran has its weights out of the
    CPU caches (a test says when, with :meth:`chill`, so no thread race decides it).
    ``cold`` counts the cold passes.
    """

    def __init__(self, monkeypatch, cold_s: float = 200.0) -> None:
        self.clock = FakeClock()
        self.cold_s = cold_s
        self.cold = 0
        self._seen: dict[int, set[int]] = {}
        self._models: dict[str, int] = {}
        self._lock = threading.Lock()
        monkeypatch.setattr(
            predictor_mod, "time", SimpleNamespace(perf_counter=self.clock.perf_counter)
        )
        real_logits = predictor_mod.row_logits

        def row_logits(model, input_ids, *args):
            with self._lock:
                seen = self._seen.setdefault(id(model), set())
                if int(input_ids.shape[-1]) not in seen:
                    seen.add(int(input_ids.shape[-1]))
                    self.cold += 1
                    self.clock.spend(cold_s)
            return real_logits(model, input_ids, *args)

        monkeypatch.setattr(predictor_mod, "row_logits", row_logits)

    def __call__(self, path) -> ModelPredictor:
        predictor = ModelPredictor(path)
        with self._lock:
            self._models[str(path)] = id(predictor.model)
        return predictor

    def chill(self, path) -> None:
        """The next pass of the model loaded from ``path`` is cold again."""
        with self._lock:
            self._seen.pop(self._models[str(path)], None)
