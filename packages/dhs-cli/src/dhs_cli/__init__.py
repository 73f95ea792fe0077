"""Dark Halo Scope command line: `dhs run`, `dhs validate`, `dhs plugins`, ...."""

from dhs_cli.__about__ import __version__

__all__ = ["__version__"]
