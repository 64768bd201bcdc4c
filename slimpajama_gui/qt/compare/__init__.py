"""Compare: the table, the Pareto chart and a pair of variants in detail.

:class:`CompareView` is the screen; the results index it shows is Qt-free
(:mod:`slimpajama_gui.core.jobs.index`, :mod:`slimpajama_gui.core.jobs.flips`).
"""

from slimpajama_gui.qt.compare.view import CompareView

__all__ = ["CompareView"]
