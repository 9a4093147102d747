"""Several workers claiming one row at the same moment (shared by the SQLite and server tests)."""

from __future__ import annotations

import threading

from mlflow import MlflowClient

from mixscale import track as tr


def race_claims(uri: str, row: tr.RowSpec, workers: int = 8) -> tuple[list, list, list]:
    """``workers`` threads, each with its own client to ``uri``, call ``claim_row(row)`` at once.

    Returns the run ids of the winners, the messages of the RowTaken losers and any other
    errors (``repr``).
    """
    barrier = threading.Barrier(workers)
    won: list[str] = []
    lost: list[str] = []
    errors: list[str] = []

    def worker() -> None:
        own = MlflowClient(uri)
        barrier.wait()
        try:
            won.append(tr.claim_row(own, row))
        except tr.RowTaken as exc:
            lost.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - the caller asserts there are none
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return won, lost, errors
