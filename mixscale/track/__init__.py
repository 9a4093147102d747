"""Everything that talks to the tracking server about runs (with :mod:`mixscale.serve`, the
only mlflow importer).

Stages hand data to each other through run ids, tags and named artifacts, all named in
:mod:`~mixscale.track.names`. Every call goes through an explicit :class:`mlflow.MlflowClient`
and run id, never the fluent "active run", so stages compose in one process and inside
``mlflow run``. :mod:`~mixscale.track.store` reaches the store (URI, the client of
:func:`~mixscale.track.store.open_client`, refused lookups, retries),
:mod:`~mixscale.track.runs` starts, logs and ends runs, :mod:`~mixscale.track.rows` creates and
reads a design's rows, :mod:`~mixscale.track.claims` claims and ends them,
:mod:`~mixscale.track.evalsender` sends a row's evaluations from a background thread,
:mod:`~mixscale.track.checkpoints` keeps a row's checkpoint and
:mod:`~mixscale.track.fittable` reads the fit table back.
"""

from __future__ import annotations

from mixscale.errors import RowTaken, TrackingUnavailable
from mixscale.track import claims, evalsender, fittable, names, rows, runs, store
from mixscale.track.claims import *  # noqa: F403  (a face: it hands every public name on)
from mixscale.track.evalsender import *  # noqa: F403
from mixscale.track.fittable import *  # noqa: F403
from mixscale.track.names import *  # noqa: F403
from mixscale.track.rows import *  # noqa: F403
from mixscale.track.runs import *  # noqa: F403
from mixscale.track.store import *  # noqa: F403

__all__ = [*names.__all__, *store.__all__, *rows.__all__, *runs.__all__, *claims.__all__,
           *evalsender.__all__, *fittable.__all__, "RowTaken", "TrackingUnavailable"]
