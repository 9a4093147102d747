"""Sending a row's evaluations from a background thread (private; re-exported as
:class:`mixscale.track.EvalSender`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from mlflow import MlflowClient

from mixscale.track.runs import log_eval

__all__ = ["EvalSender"]


class EvalSender:
    """Sends one run's :func:`log_eval` requests (and other calls) from a background thread.

    Training goes on while an evaluation or a checkpoint travels to the tracking store (a
    request to a remote server takes tens of milliseconds, a checkpoint upload longer). Tasks
    run in the order they were queued; once one fails (after :func:`with_retries` gave up, or
    a checkpoint found its run taken over), the later ones are dropped and the next
    :meth:`log` or :meth:`call` raises that error in the training thread, so training stops at
    its next evaluation. :meth:`flush` waits for every task queued so far and raises the first
    error; use it before the run ends. MLflow's own ``synchronous=False`` logging is not used:
    ending a run shuts its queue down, which costs about a second per run.
    """

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixscale-eval")
        self._sent: list[Future] = []
        self._call: Future | None = None  # the last call(), possibly still in flight
        self._failed: BaseException | None = None  # the first task that failed

    def _submit(self, fn: Callable[[], object]) -> Future:
        if self._failed is not None:
            raise self._failed

        def guarded() -> object:
            if self._failed is not None:  # an earlier task failed: drop this one
                return None
            try:
                return fn()
            except BaseException as exc:
                self._failed = exc
                raise

        future = self._pool.submit(guarded)
        self._sent.append(future)
        return future

    def log(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Queue one evaluation (the metrics are copied now)."""
        values = dict(metrics)
        self._submit(lambda: log_eval(self.client, self.run_id, epoch, values))

    def call(self, fn: Callable[[], object]) -> None:
        """Queue ``fn`` (e.g. storing a checkpoint) behind the evaluations sent so far.

        It runs only if every earlier task succeeded, so what it records never gets ahead of
        the stored metrics. One call is in flight at a time: the next waits for the previous
        one (and raises its error), so at most one captured state waits in memory.
        """
        if self._call is not None:
            self._call.result()
        self._call = self._submit(fn)

    def flush(self) -> None:
        """Wait until every queued task is done; raise the first failure."""
        sent, self._sent, self._call = self._sent, [], None
        for future in sent:
            future.result()
        if self._failed is not None:
            raise self._failed

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
