"""The Qt-free engine: model, loading, compression, training and measurement.

Nothing under this package may import PySide6, pyqtgraph or superqt (an import-linter
contract checked by ``make test``), so it runs headless, in the CLI and under torchrun.
"""
