"""Fitted laws as MLflow pyfunc models (with :mod:`mixscale.track`, the only mlflow importer; no
torch): the wrapper, its signature, registration and aliases in :mod:`~mixscale.serve.pyfunc`,
and the models-from-code entry MLflow runs at load time in :mod:`~mixscale.serve.law_model`.
"""

from __future__ import annotations

from mixscale.serve import pyfunc
from mixscale.serve.pyfunc import *  # noqa: F403  (a face: it hands every public name on)

__all__ = pyfunc.__all__
