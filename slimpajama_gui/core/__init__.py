"""The Qt-free engine: model, loading, compression, training and measurement.

Nothing under this package may import PySide6, pyqtgraph or superqt (an import-linter
contract checked by ``make test``), so it runs headless, in the CLI and under torchrun.
"""

from slimpajama_gui.core.techniques.quantize import int8_path as _int8_path

# Before any int8 kernel runs: SLIMPAJAMA_INT8_PATH=no-vnni also selects fbgemm's AVX2
# kernels, which read their setting once (see core/techniques/quantize/int8_path.py).
_int8_path.apply_override()
