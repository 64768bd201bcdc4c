"""SlimPajama Studio: make transformer text classifiers small and fast, and watch it happen."""

__version__ = "0.1.0"
