"""asgm-detector: artisanal and small-scale gold mining in Sentinel-2 patches with OSM context."""

import os

# TensorFlow's C++ start-up lines (absl, CPU features) would land in every CLI's output and every
# executed notebook; only its errors are shown. Set before any module imports TensorFlow; a value
# the user set wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from asgm.errors import AsgmError  # noqa: E402

__all__ = ["AsgmError"]
__version__ = "0.1.0"
