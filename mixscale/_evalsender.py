"""Sending a row's evaluations from a background thread (private; re-exported as
:class:`mixscale.tracking.EvalSender`)."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from mlflow import MlflowClient

__all__ = ["EvalSender"]


class EvalSender:
    """Sends one run's :func:`log_eval` requests from a background thread, in order.

    Training goes on while an evaluation travels to the tracking store (a request to a remote
    server takes tens of milliseconds). :meth:`flush` waits for every request sent so far and
    raises the first error (after :func:`with_retries` gave up); use it before the run ends.
    MLflow's own ``synchronous=False`` logging is not used: ending a run shuts its queue down,
    which costs about a second per run.
    """

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixscale-eval")
        self._sent: list = []

    def log(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Queue one evaluation (the metrics are copied now)."""
        from mixscale.tracking import log_eval

        self._sent.append(self._pool.submit(log_eval, self.client, self.run_id, epoch,
                                            dict(metrics)))

    def flush(self) -> None:
        """Wait until every queued evaluation is stored; raise the first failure."""
        sent, self._sent = self._sent, []
        for future in sent:
            future.result()

    def close(self) -> None:
        """Flush, then stop the thread."""
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> EvalSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
