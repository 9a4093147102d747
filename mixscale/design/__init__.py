"""Mixture designs of integer class counts (pure numpy).

:mod:`~mixscale.design.sampling` samples and enumerates bounded integer class counts exactly;
:mod:`~mixscale.design.maximin` builds maximin designs from them and measures their quality.
"""

from __future__ import annotations

from mixscale.design.maximin import METHODS, DesignQuality, design_quality, maximin_design
from mixscale.design.sampling import FeasibleSampler, check_bounds

__all__ = [
    "check_bounds",
    "FeasibleSampler",
    "maximin_design",
    "DesignQuality",
    "design_quality",
    "METHODS",
]
