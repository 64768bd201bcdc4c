"""The Playground: type a sentence, see what two models predict, side by side.

Two pickers choose the models (only models with a trained classifier head are offered);
by default the original on the left and the newest variant on the right
(:func:`slimpajama_gui.core.jobs.index.playground_pair`). The live tab predicts as the user types; the batch tab runs many
lines through both models and lists where they disagree (:mod:`.panels`). The view
(:mod:`.view`) only wires widgets to workers: loading and predicting go through the one
inference path in :mod:`slimpajama_gui.core.runtime.predictor`.
"""

from slimpajama_gui.qt.playground.panels import BatchPanel, PredictionPanel
from slimpajama_gui.qt.playground.view import PlaygroundView

__all__ = ["BatchPanel", "PlaygroundView", "PredictionPanel"]
