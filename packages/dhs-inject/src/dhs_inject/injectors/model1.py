"""Model 1: any host; lens axis ratio and position angle drawn independently of the host light."""

from __future__ import annotations

from dhs_inject.injectors.base import BaseInjector
from dhs_inject.injectors.configs import Model1Config


def model1(config: Model1Config) -> BaseInjector:
    """SIE + shear lensing of Sersic (+ clumps) sources into any host, lens shape from the prior."""
    return BaseInjector(config)
