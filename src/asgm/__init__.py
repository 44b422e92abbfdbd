"""asgm-detector: artisanal and small-scale gold mining in Sentinel-2 patches with OSM context."""

import os

# TensorFlow's C++ start-up lines (absl, CPU features) would land in every CLI's output and every
# executed notebook; only its errors are shown. Set before any module imports TensorFlow; a value
# the user set wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

from asgm.errors import AsgmError, AsgmWarning  # noqa: E402
from asgm.memory import keep_freed_memory  # noqa: E402

# Before TensorFlow allocates anything: freed tensors stay in the heap instead of costing page
# faults at every training step (asgm.memory; a third of the CPU time on 2 cores).
keep_freed_memory()

_format_warning = warnings.formatwarning


def _sentence(message, category, filename, lineno, line=None):
    """This package's warnings as one sentence (in a notebook, the reader needs the message, not
    the line of code that raised it); every other warning as Python formats it."""
    if issubclass(category, AsgmWarning):
        return f"Warning: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


warnings.formatwarning = _sentence
# A message is shown once per process, even when several calls raise it (e.g. one per metric).
warnings.filterwarnings("once", category=AsgmWarning)

__all__ = ["AsgmError", "AsgmWarning"]
__version__ = "0.1.0"
