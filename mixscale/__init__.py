"""mixscale: per-class dataset-size scaling laws, tracked and served with MLflow.

The package root stays cheap to import (no torch, no mlflow) so that a served law and the
pure maths load quickly; import the submodules you need, for example ``mixscale.design``.
"""

from __future__ import annotations

from mixscale.errors import MixscaleError

__version__ = "0.1.0"

__all__ = ["MixscaleError", "__version__"]
