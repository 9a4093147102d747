"""Errors that mean "the user asked for something that cannot be done".

The command line turns a :class:`MixscaleError` into one clear line and a non-zero exit, without
a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["MixscaleError", "DesignError", "FitError"]


class MixscaleError(ValueError):
    """Bad input: the message names the bad value and what is allowed."""


class DesignError(MixscaleError):
    """A mixture design that cannot be built (infeasible bounds, too many rows, ...)."""


class FitError(MixscaleError):
    """A scaling law that cannot be fitted (too few rows, every start failed, ...)."""
