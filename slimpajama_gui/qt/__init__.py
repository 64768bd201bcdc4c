"""All GUI code (PySide6, pyqtgraph, superqt). Never runs model code on the GUI thread."""
