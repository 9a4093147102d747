"""Reading a fitted law back from its JSON, whichever kind it is (the served model's loader)."""

from __future__ import annotations

import json
from typing import Any

from mixscale.fit.classlaw import CLASS_FORMAT, ClassLaw
from mixscale.fit.scaling import ScalingLaw

__all__ = ["read_law"]


def read_law(text: str) -> Any:
    """A fitted law from its JSON: a ``ClassLaw`` or a ``ScalingLaw``, by ``format``."""
    d = json.loads(text)
    if isinstance(d, dict) and d.get("format") == CLASS_FORMAT:
        return ClassLaw.from_dict(d)
    return ScalingLaw.from_dict(d)
