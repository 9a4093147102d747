"""Models-from-code entry of a fitted scaling law (see :mod:`mixscale.serve`).

MLflow copies this file into each logged model and runs it at load time; the law itself is
rebuilt from the model's JSON artifact in :meth:`mixscale.serve.LawModel.load_context`.
"""

import mlflow

from mixscale.serve.pyfunc import LawModel

mlflow.models.set_model(LawModel())
