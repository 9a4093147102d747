"""A throwaway PostgreSQL cluster for tests: initdb in a temp dir, postgres on a free port.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user
(``runuser``). Without the server binaries the tests that need it are skipped locally and fail
in CI (``CI=true``), where ``.ci/run`` installs them.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port

__all__ = ["PostgresCluster", "start_cluster"]


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None



@dataclass
class PostgresCluster:
    """A running cluster: ``url(db)`` gives a SQLAlchemy URL, ``create_database`` makes one."""

    root: Path
    port: int
    _as_postgres: list[str]
    _pg_ctl: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self._as_postgres, self._pg_ctl, "-D", str(self.root / "data"), *args],
                       check=True, capture_output=True, text=True, timeout=120)

    def restart(self) -> None:
        """Stop and start the server on the same port (for fault tests)."""
        self._ctl("-m", "fast", "stop")
        self.start()

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", opts, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")


def start_cluster() -> PostgresCluster:
    """Start a cluster in a fresh temp dir (caller stops it and removes ``root``)."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not (initdb and pg_ctl):
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are missing in CI")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    root = Path(tempfile.mkdtemp(prefix="mixscale-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    done = subprocess.run([*as_postgres, initdb, "-D", str(root / "data"), "-A", "trust",
                           "-U", "postgres"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        # initdb's own last lines name the cause (a /dev/null that only root may write once
        # made every PostgreSQL test fail in CI with nothing but "exit status 1").
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise RuntimeError(f"initdb failed (exit {done.returncode}) in {root}:\n{tail}")
    cluster = PostgresCluster(root=root, port=free_port(), _as_postgres=as_postgres,
                              _pg_ctl=pg_ctl)
    cluster.start()
    return cluster
