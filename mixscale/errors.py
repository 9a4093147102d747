"""Errors that mean "the user asked for something that cannot be done".

The command line turns a :class:`MixscaleError` into one clear line and a non-zero exit, without
a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "MixscaleError", "DesignError", "FitError", "NotFittedError", "RowTaken",
    "TrackingUnavailable",
]


class MixscaleError(ValueError):
    """Bad input: the message names the bad value and what is allowed."""


class DesignError(MixscaleError):
    """A mixture design that cannot be built (infeasible bounds, too many rows, ...)."""


class FitError(MixscaleError):
    """A scaling law that cannot be fitted (too few rows, every start failed, ...)."""


class NotFittedError(MixscaleError, AttributeError):
    """A fitted law was used before ``fit`` (as scikit-learn's ``NotFittedError``)."""


class RowTaken(MixscaleError):
    """The row cannot be claimed: it is FINISHED, RUNNING, or another worker claimed it first."""


class TrackingUnavailable(MixscaleError):
    """The tracking store kept failing transiently until ``with_retries`` gave up."""
