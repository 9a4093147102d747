"""Reading a fitted law back from its JSON, whichever kind it is (the served model's loader)."""

from __future__ import annotations

import json
from typing import Any

from mixscale.fit.classlaw import CLASS_FORMAT, ClassLaw
from mixscale.fit.ensemble import ENSEMBLE_FORMAT, EnsembleLaw
from mixscale.fit.scaling import ScalingLaw

__all__ = ["law_from_dict", "read_law"]


def law_from_dict(d: Any) -> Any:
    """A fitted law from its JSON dict: an ``EnsembleLaw``, a ``ClassLaw`` or a
    ``ScalingLaw``, by ``format``."""
    kind = d.get("format") if isinstance(d, dict) else None
    if kind == ENSEMBLE_FORMAT:
        return EnsembleLaw.from_dict(d)
    if kind == CLASS_FORMAT:
        return ClassLaw.from_dict(d)
    return ScalingLaw.from_dict(d)


def read_law(text: str) -> Any:
    """A fitted law from its JSON text (:func:`law_from_dict`)."""
    return law_from_dict(json.loads(text))
