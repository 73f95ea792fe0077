"""Dark Halo Scope data: manifests, cutout stores, preprocessors, HEALPix splits, torch datasets."""

from dhs_data.__about__ import __version__

__all__ = ["__version__"]
