"""Hook implementations of the example plugin. This module only wires hooks: every component
lives in its own module, and heavy imports happen when a component is built, not here."""

from __future__ import annotations

from dhs_core import hookimpl


@hookimpl
def register_architectures(register):
    from dhs_plugin_example.tiny_cnn import TinyCNNConfig, build_tiny_cnn

    register("example_tiny_cnn", build_tiny_cnn, config=TinyCNNConfig)


@hookimpl
def register_injectors(register):
    from dhs_plugin_example.ring_injector import EinsteinRingConfig, einstein_ring

    register("example_einstein_ring", einstein_ring, config=EinsteinRingConfig)
