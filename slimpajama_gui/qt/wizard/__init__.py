"""The compression wizard, one module per page around a Qt-free draft of the job.

``shell`` holds :class:`CompressWizard`; ``model_page``, ``data_page``,
``techniques_page``, ``settings_page`` and ``review_page`` hold one page each, and
``widgets`` what they share. The plan itself (presets, estimate, validation, recipe)
is :mod:`slimpajama_gui.core.plan`.
"""

from slimpajama_gui.qt.wizard.shell import CompressWizard

__all__ = ["CompressWizard"]
