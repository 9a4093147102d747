"""A throwaway local ``mlflow server`` (SQLite backend, loopback) for the benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.support
from tests.support.ports import free_port  # noqa: E402  (one helper for tests and benchmarks)


def start_server(root: Path, workers: int = 4, *, gunicorn: bool = False
                 ) -> tuple[subprocess.Popen, str]:
    """Start ``mlflow server`` on a SQLite store in ``root``; return the process and its URL.

    The schema is created first from this one process (a brand-new SQLite store opened by
    several server workers at once breaks). ``gunicorn`` serves with gunicorn instead of
    MLflow's default uvicorn (``--gunicorn-opts``). The caller terminates the process.
    """
    root.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{root}/bench.db"
    MlflowClient(db).search_experiments()
    port = free_port()
    sgi = ["--gunicorn-opts", "--log-level warning"] if gunicorn else []
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", db,
         "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), *sgi],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("mlflow server did not start in 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    """End a server from :func:`start_server` with the workers it forked (its process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
