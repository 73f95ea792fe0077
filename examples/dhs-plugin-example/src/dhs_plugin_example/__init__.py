"""An example third-party Dark Halo Scope plugin."""

__version__ = "0.1.0"
