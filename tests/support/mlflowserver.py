"""A throwaway `mlflow server` for tests and benchmarks: PostgreSQL backend, local artifacts.

Bound to 127.0.0.1 on a free port; ``start`` polls ``/health`` until a bounded deadline;
``stop`` ends the server's process group (the server and the workers it forked), so it can be
started again on the same port and store (fault tests).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.ports import free_port

__all__ = ["MlflowServer"]


class MlflowServer:
    """`mlflow server --backend-store-uri <backend> --artifacts-destination <artifacts>`."""

    def __init__(self, backend: str, artifacts: Path, log: Path, *, workers: int = 2,
                 gunicorn: bool = False) -> None:
        self.backend, self.artifacts, self.log, self.workers = backend, artifacts, log, workers
        self.gunicorn = gunicorn  # serve with gunicorn (--gunicorn-opts), not MLflow's uvicorn
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, deadline_s: float = 180.0) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
               "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", str(self.workers),
               *(["--gunicorn-opts", "--log-level warning"] if self.gunicorn else [])]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy in {deadline_s} s: "
                           f"{self.log.read_text()[-3000:]}")

    @property
    def running(self) -> bool:
        """Whether the server process was started and has not ended."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if not self.running:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its own workers
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
