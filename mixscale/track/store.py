"""Reaching the tracking store: resolving and checking its URI, opening a client on it, turning
a lookup the store refuses into one line, and retrying transient failures."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import mlflow
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mixscale.errors import MixscaleError, TrackingUnavailable

__all__ = ["resolve_tracking_uri", "open_client", "look_up", "PROBE_TIMEOUT",
           "tracking_schemes", "check_tracking_uri", "with_retries"]

T = TypeVar("T")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Pick the tracking URI, make a relative SQLite path absolute, check it, and activate it.

    Order: ``uri``, then ``MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db`` in the working
    directory (MLflow's own default). The result is also exported as ``MLFLOW_TRACKING_URI`` so
    child processes use the same store.

    Raises
    ------
    MixscaleError
        From :func:`check_tracking_uri`: an unknown scheme, a SQLite file in a missing folder,
        or a tracking server that does not answer. Nothing is created or logged then.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///"):]
        if path and not path.startswith(":memory:"):
            uri = "sqlite:///" + str(Path(path).resolve())
    check_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def open_client(uri: str) -> MlflowClient:
    """A client of the tracking store at ``uri``, the one every stage is handed.

    ``uri`` is one that :func:`resolve_tracking_uri` returned (checked, absolute), in this
    process or in the parent that started it (a worker gets it as ``tracking_uri``). Outside
    :mod:`mixscale.track` and :mod:`mixscale.serve`, clients are built only here; the other
    packages name :class:`mlflow.MlflowClient` in annotations alone.
    """
    return MlflowClient(uri)


def look_up(call: Callable[[], T], *, missing: Callable[[str], str]) -> T:
    """Run the lookup ``call`` (a run, a model version, an alias...), refusing in one line
    what the store does not hold.

    Parameters
    ----------
    call : callable
        The request, e.g. ``lambda: client.get_run(run_id)``.
    missing : callable
        Given the store's error in at most 200 characters, the message to raise.

    Raises
    ------
    MixscaleError
        ``missing(detail)``, when the store answers the request with an error (an
        :class:`~mlflow.exceptions.MlflowException`: no such run, model, version or alias).
        Other errors (a store that does not answer) go on as they are.
    """
    try:
        return call()
    except MlflowException as exc:
        raise MixscaleError(missing(str(exc)[:200])) from None


PROBE_TIMEOUT = 5.0  # seconds to connect, and again to answer, on first contact with a server


_SERVER_UP = {200, 401, 403}  # /health statuses of a running server (with auth: 401, 403)


# Schemes named when MLflow's registry cannot be read (it is private API; MLflow 3.x has it).
_FALLBACK_SCHEMES = ("file", "http", "https", "mssql", "mysql", "postgresql", "sqlite")


def tracking_schemes() -> list[str]:
    """The URI schemes MLflow can open as a tracking store (``""``, a plain path, aside).

    Read from MLflow's own store registry, so schemes that plugins register count too; the
    Unity Catalog schemes it registers only to refuse them (``uc``, ``databricks-uc``) are left
    out.
    """
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        schemes = set(_tracking_store_registry._registry)
    except (ImportError, AttributeError):  # pragma: no cover - a future MLflow
        schemes = set(_FALLBACK_SCHEMES)
    return sorted(s for s in schemes if s and s not in ("uc", "databricks-uc"))


def check_tracking_uri(uri: str) -> None:
    """Refuse a tracking URI that cannot work, in one line, before anything touches it.

    - The scheme must be one MLflow registers (:func:`tracking_schemes`; ``postgresql+driver``
      counts as ``postgresql``), or none (a local folder).
    - A SQLite file may be new, but its folder must exist: MLflow would silently create the
      folders and a new, empty store (a typo in the path would go unseen).
    - An ``http(s)`` server must answer one probe of ``<uri>/health`` within
      :data:`PROBE_TIMEOUT` seconds as an MLflow server does (200, or 401/403 behind auth).
      The probe has none of MLflow's retries, which hold an unreachable server for minutes;
      a server that answered once gets them, and the backoff of :func:`with_retries` for
      every row-lifecycle call, should it go away later.

    Raises
    ------
    MixscaleError
        Naming the URI and what is allowed.
    """
    from mlflow.utils.uri import get_uri_scheme

    raw = uri.split(":", 1)[0] if "://" in uri else ""
    try:
        scheme = get_uri_scheme(uri)
    except MlflowException:  # e.g. sqlitex://: MLflow's own "invalid database engine"
        scheme = raw
    allowed = tracking_schemes()
    if scheme not in allowed and scheme != "":
        raise MixscaleError(
            f"tracking URI {uri!r} has the unknown scheme {raw or scheme!r}; allowed: "
            f"{', '.join(allowed)} (a database may name its driver, e.g. postgresql+psycopg2),"
            " or a local folder path."
        )
    if scheme == "sqlite":
        _check_sqlite_path(uri)
    elif scheme in ("http", "https"):
        _probe_server(uri)


def _check_sqlite_path(uri: str) -> None:
    if ":///" not in uri:
        return  # sqlite:// is an in-memory database
    path = uri.split(":///", 1)[1].split("?", 1)[0]
    if not path or path.startswith(":memory:"):
        return
    file = Path(path)
    if file.is_dir():
        raise MixscaleError(f"tracking URI {uri!r} names the folder {file}, not a SQLite file; "
                            f"name a file in it, e.g. sqlite:///{file / 'mlflow.db'}.")
    if not file.parent.is_dir():
        raise MixscaleError(
            f"tracking URI {uri!r}: the folder {file.parent} does not exist; create it first "
            "(a missing file in an existing folder is fine: it becomes a new store), or fix "
            "the path."
        )


def _probe_server(uri: str) -> None:
    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("1", "true")
    verify: bool | str = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or not insecure
    health = uri.rstrip("/") + "/health"
    try:
        status = requests.get(health, timeout=PROBE_TIMEOUT, verify=verify).status_code
    except requests.exceptions.RequestException as exc:
        if isinstance(exc, requests.exceptions.Timeout):
            reason = f"no answer within {PROBE_TIMEOUT:g} s"
        else:
            found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
            reason = found.group(1).strip() if found else type(exc).__name__
        raise MixscaleError(
            f"the tracking server {uri} cannot be reached ({reason}); start it (mlflow "
            "server ...), check the host and port, or pass another --tracking-uri "
            "($MLFLOW_TRACKING_URI)."
        ) from None
    if status not in _SERVER_UP:
        raise MixscaleError(
            f"{uri} answered HTTP {status} to {health}, where an MLflow tracking server "
            f"answers {' or '.join(map(str, sorted(_SERVER_UP)))}: is it an MLflow server "
            "(mlflow server ...), and is the URI its root?"
        )


def _transient(exc: BaseException) -> bool:
    """Whether a failed tracking call is worth repeating (connection trouble, server 5xx)."""
    if isinstance(exc, MlflowException):
        return exc.error_code in _TRANSIENT_CODES
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    try:
        import sqlalchemy.exc
    except ImportError:  # pragma: no cover - mlflow depends on sqlalchemy
        return False
    return isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError)


_TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                    "DEADLINE_EXCEEDED"}


def _describe(exc: BaseException) -> tuple[str, str]:
    """A failed call's error in one short line, and ``" <server>"`` if it names one."""
    text = " ".join(str(exc).split())
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)  # e.g. "Connection refused"
    server = re.search(r"https?://[^/\s'\"]+", text)
    return (f"{type(exc).__name__}: {errno.group(1).strip() if errno else text[:200]}",
            f" {server.group(0)}" if server else "")


def with_retries(call: Callable[[], T], *, what: str = "tracking call",
                 attempts: int | None = None, base_delay: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``call``, repeating it with exponential backoff while it fails transiently.

    This sits on top of MLflow's own HTTP retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
    ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``), for the failures those give up on or do not cover:
    a tracking server down longer than its retries last, or a database URI used directly.

    Parameters
    ----------
    call : callable
        The request; it must be safe to repeat (every row-lifecycle call is: metrics carry
        fixed timestamps, so a repeated batch is deduplicated by the store).
    what : str
        Names the call in the final error.
    attempts : int, optional
        Tries in all; default ``$MIXSCALE_TRACKING_RETRIES`` or 4.
    base_delay : float, optional
        Seconds before the first repeat, doubled each time; default
        ``$MIXSCALE_TRACKING_BACKOFF`` or 2.
    sleep : callable
        Replaceable in tests.

    Raises
    ------
    TrackingUnavailable
        When the last try failed transiently too, after ``base_delay * (2**(attempts-1) - 1)``
        seconds of backoff in all (plus MLflow's own retries within each try); one line that
        names the call, the tries, the time and the last error. Other errors at once, as is.
    """
    attempts = attempts or int(os.environ.get("MIXSCALE_TRACKING_RETRIES", "4"))
    if base_delay is None:
        base_delay = float(os.environ.get("MIXSCALE_TRACKING_BACKOFF", "2"))
    start = time.monotonic()
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if not _transient(exc):
                raise
            last, server = _describe(exc)
            if attempt == attempts - 1:
                raise TrackingUnavailable(
                    f"{what} failed {attempts} times in {time.monotonic() - start:.0f} s, the "
                    f"tracking store{server} did not answer ({last}); rerun once it does (rows "
                    "left RUNNING restart as the README's Team set-up says); more patience: "
                    "$MIXSCALE_TRACKING_RETRIES, $MIXSCALE_TRACKING_BACKOFF."
                ) from exc
            delay = base_delay * 2**attempt
            print(f"{what} failed ({last}); retrying in {delay:g} s ({attempt + 2}/{attempts})",
                  file=sys.stderr, flush=True)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
