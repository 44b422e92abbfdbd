"""asgm-detector: artisanal and small-scale gold mining in Sentinel-2 patches with OSM context."""

from asgm.errors import AsgmError

__all__ = ["AsgmError"]
__version__ = "0.1.0"
