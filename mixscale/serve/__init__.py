"""Fitted laws as MLflow pyfunc models (with :mod:`mixscale.track`, the only mlflow importer; no
torch): the wrapper, its signature, registration and aliases in :mod:`~mixscale.serve.pyfunc`,
and the models-from-code entry MLflow runs at load time in :mod:`~mixscale.serve.law_model`.
"""

from __future__ import annotations

from mixscale.serve.pyfunc import (
    CHAMPION,
    MAX_SCALE,
    OUTSIDE,
    LawModel,
    check_served_input,
    law_signature,
    log_law,
    served_class_column,
    set_alias,
)

__all__ = ["LawModel", "check_served_input", "law_signature", "log_law", "served_class_column",
           "set_alias", "CHAMPION", "MAX_SCALE", "OUTSIDE"]
