"""The train stage: a design's rows, on one machine or several; which rows a worker owns, and how
it runs them.

Three ways to spread rows, with the existing engines and no coordination service of our own:

* **Pulling** (the same ``train --design-id`` on several machines): every worker walks the rows
  and claims each just before training it. A claim reads the row afresh and is atomic
  (:func:`mixscale.track.claim_row`), so a row taken by another worker is skipped.

* **Static partitions** (``train --worker I --workers N``): worker ``I`` owns exactly the rows
  with ``row % N == I``. Kubernetes Indexed Jobs (``JOB_COMPLETION_INDEX``) and Slurm job arrays
  (``SLURM_ARRAY_TASK_ID``) map onto it one-to-one with ``--worker env``. Each row has one
  owner, so no two workers ever train the same row, and the union of the partitions is every
  row, so none is skipped.
* **Ray** (``train --executor ray``): one driver owns every row, claims each just before it
  submits it as a Ray task with its CPU/GPU resources, and ends the rows whose task died.

Dead workers. A worker killed mid-row leaves its row RUNNING. Who may restart it:

* partitioned: the owner of the partition. A RUNNING row in a worker's own partition can only
  be left by an earlier, dead attempt of the same index (never run two workers with one index
  at once), so the rerun restarts it in a fresh run at once;
* un-partitioned (``--workers 0``, the default, and the Ray driver): a RUNNING row is dead when
  its heartbeat (the tag ``mixscale.heartbeat``, refreshed at the claim and at every evaluation)
  is older than ``--stale-after`` seconds; 0 (the default) never declares a row dead.

A restart ends the stale run KILLED and tags it superseded; if its worker was alive after all,
its next ``end_row`` sees the tag and ends the run KILLED, never FINISHED.

Checkpoints (``--checkpoint-every N``). A row to restart whose run holds a checkpoint made
under the same recipe resumes in that same run instead (:mod:`mixscale.track.checkpoints`); every
claim sets a new token on the run, so a worker presumed dead that was alive after all stops at
its next checkpoint and never ends the run it lost.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mixscale import track as tr
from mixscale.config import RESOLVED_PARAMS, Echo, TrainConfig
from mixscale.data import (
    EVAL_IMAGES_AUTO,
    design_dataset,
    eval_subset,
    load_dataset,
    sample_subset,
    subset_hash,
)
from mixscale.data.datasets import ImageDataset
from mixscale.errors import MixscaleError
from mixscale.stages import checkpoints as ck
from mixscale.stages.progress import Progress
from mixscale.train import (
    baseline_accuracy,
    check_row,
    resolve_settings,
    row_steps,
    set_threads,
    train_model,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["Assignment", "WORKER_ENV_VARS", "EXECUTORS", "resolve_worker", "select_rows",
           "configure_http_retries", "resolve_eval", "eval_note", "row_params", "claim_recipe",
           "claimed_rows", "run_row",
           "train_with_ray", "train_in_processes", "time_shares", "train_rows",
           "check_adhoc_counts", "train_counts"]


# Where `--worker env` reads the worker index, in this order.
WORKER_ENV_VARS: tuple[str, ...] = ("JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID")
EXECUTORS: tuple[str, ...] = ("local", "ray")
# MLflow's HTTP retries for a training worker unless the user set them: 5 retries with backoff
# factor 1 (about 30 s per request); `tracking.with_retries` repeats the call on top of that.
HTTP_RETRY_DEFAULTS: dict[str, str] = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
                                       "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@dataclass(frozen=True)
class Assignment:
    """A row this worker will train."""

    row: tr.RowSpec
    takeover: bool  # the row is RUNNING and its worker is presumed dead: restart it


def resolve_worker(worker: str | int, workers: int,
                   environ: dict[str, str] | None = None) -> int:
    """The worker index: ``worker`` itself, or with ``"env"`` the first of
    :data:`WORKER_ENV_VARS` that is set.

    Raises
    ------
    MixscaleError
        If the index is not an integer in ``[0, workers)``, if ``workers`` is 0 (no
        partitioning) and the index is not 0, or if ``env`` finds none of the variables.
    """
    environ = os.environ if environ is None else environ
    source = "--worker"
    if isinstance(worker, str) and worker.strip().lower() == "env":
        found = [v for v in WORKER_ENV_VARS if environ.get(v, "").strip()]
        if not found:
            raise MixscaleError(
                f"--worker env needs one of {', '.join(WORKER_ENV_VARS)} in the environment "
                "(a Kubernetes Indexed Job or a Slurm array sets it); none is set."
            )
        source, worker = found[0], environ[found[0]].strip()
    try:
        index = int(worker)
    except (TypeError, ValueError):
        raise MixscaleError(
            f"{source} must be an integer or 'env', but got {worker!r}."
        ) from None
    if workers < 0:
        raise MixscaleError(f"--workers must be >= 0 (0 = no partitioning), got {workers}.")
    if workers == 0:
        if index != 0:
            raise MixscaleError(
                f"{source}={index} needs --workers N (the number of workers, N > {index}); "
                "without --workers every row belongs to this worker."
            )
        return 0
    if not 0 <= index < workers:
        raise MixscaleError(
            f"{source} must be in [0, {workers - 1}] for --workers {workers}, but got {index}."
        )
    return index


def select_rows(rows: Sequence[tr.RowSpec], *, worker: int = 0, workers: int = 0,
                stale_after: float = 0.0, now: float | None = None) -> list[Assignment]:
    """The rows this worker trains, in row order.

    Parameters
    ----------
    rows : sequence of RowSpec
        The design's current rows (:func:`mixscale.track.list_rows`).
    worker, workers : int
        With ``workers >= 1``, only rows with ``row % workers == worker``; RUNNING rows among
        them are taken over (this worker is their only owner). ``workers == 0``: every row.
    stale_after : float
        Un-partitioned only: a RUNNING row whose heartbeat is more than this many seconds old
        is taken over; 0 = RUNNING rows are always left alone.
    now : float, optional
        Unix seconds (default: now).

    Returns
    -------
    list of Assignment
        SCHEDULED, FAILED and KILLED rows, plus the RUNNING rows judged dead. FINISHED rows
        are never returned.
    """
    now = time.time() if now is None else now
    out = []
    for row in rows:
        if workers >= 1 and row.row % workers != worker:
            continue
        if row.status in ("SCHEDULED", "FAILED", "KILLED"):
            out.append(Assignment(row, takeover=False))
        elif row.status == "RUNNING":
            if workers >= 1:
                out.append(Assignment(row, takeover=True))
            elif stale_after > 0 and now - (row.heartbeat or 0.0) > stale_after:
                out.append(Assignment(row, takeover=True))
    return out


def configure_http_retries() -> None:
    """Set :data:`HTTP_RETRY_DEFAULTS` in the environment where the user has not."""
    for key, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)


def resolve_eval(config: TrainConfig, dataset: ImageDataset) -> TrainConfig:
    """``config`` with ``eval_images`` set to the number of test images each evaluation before
    the last scores (what a row logs): 0 (auto) becomes :data:`mixscale.data.EVAL_IMAGES_AUTO`
    or the whole split, whichever is smaller. The last evaluation always scores the whole split.

    Raises
    ------
    MixscaleError
        If ``eval_images`` is neither 0 nor in [number of classes, test split size]
        (:func:`mixscale.data.eval_subset`); callers check it before anything is logged.
    """
    n = config.eval_images or min(EVAL_IMAGES_AUTO, len(dataset.test_labels))
    idx = eval_subset(dataset.test_labels, n, n_classes=dataset.n_classes)
    return dataclasses.replace(config, eval_images=len(idx))


def eval_note(config: TrainConfig) -> str | None:
    """The line saying which epochs ``eval_from`` leaves unevaluated; None when it skips none."""
    skipped = config.skipped_epochs()
    if not skipped:
        return None
    shown = ", ".join(map(str, config.eval_epochs()))
    return (f"evaluating epochs {shown} of {config.epochs}: epochs below {config.eval_from} "
            f"(the fit's --min-epoch, which drops them) are not evaluated; --eval-early "
            f"evaluates them too")


def row_params(config: TrainConfig, settings: Any) -> dict[str, object]:
    """The training recipe as logged on every row run."""
    return config.to_params(settings.as_params())


def claim_recipe(config: TrainConfig, settings: Any = None) -> dict[str, object] | None:
    """The params a run must carry to be resumed (``claim_row(recipe=...)``); None = no resume.

    ``settings`` (resolved on the training machine) gives every logged param. Without them (a
    Ray driver cannot know what its tasks resolve) the params that ``auto`` choices resolve
    (``device``, ``augment``, ``stem``, ``precision``) are left out; the task itself checks
    them (:func:`mixscale.stages.checkpoints.prepare_resume`).
    """
    if not config.checkpoint_every:
        return None
    if settings is not None:
        return row_params(config, settings)
    return config.to_params(omit=("download", *RESOLVED_PARAMS))


def claimed_rows(client: MlflowClient, assignments: Sequence[Assignment], config: TrainConfig,
                 recipe: dict[str, object] | None, *, skip: Echo
                 ) -> Iterator[tuple[Assignment, str]]:
    """The one claim loop of every executor: claim each assigned row just before it is wanted.

    Yields ``(assignment, run id)`` for each row this worker got (:func:`mixscale.track.claim_row`
    with ``recipe``, resuming when ``config`` checkpoints); a row another worker or driver
    claimed first (its list was newer than ours) is skipped with ``skip("skipped: <why>")``.
    """
    for a in assignments:
        try:
            run_id = tr.claim_row(client, a.row, takeover=a.takeover,
                                  resume=config.checkpoint_every > 0, recipe=recipe)
        except tr.RowTaken as exc:
            skip(f"skipped: {exc}")
            continue
        yield a, run_id


def run_row(client: MlflowClient, row: tr.RowSpec, run_id: str, *, dataset: Any,
            config: TrainConfig, params: dict[str, object],
            on_eval: Callable[[int, dict[str, float]], None] | None = None,
            on_epoch: Callable[[int], None] | None = None, echo: Echo | None = None) -> Any:
    """Train one claimed row into run ``run_id`` and end the run; return the TrainResult.

    With ``config.checkpoint_every`` the training state is saved on the run every that many
    epochs, in the background behind the evaluations so far (training waits only if the
    previous checkpoint is still being stored), and a run the claim resumed continues from its
    checkpoint (``echo`` reports it) without logging stored evaluations again. A worker whose
    row was taken over learns it when its next checkpoint is due, or at the end.

    On any error the run is ended FAILED with the error as a tag (best effort: if the server is
    unreachable, or :class:`~mixscale.track.TrackingUnavailable` says it was, the run stays
    RUNNING, and the partition's rerun or ``--stale-after`` restarts it), and the error is
    raised.
    """

    sender = tr.EvalSender(client, run_id)  # evaluations travel while training goes on
    start = ck.Resume(state=None, claim=None, logged_epoch=0)
    tracking = [0.0]  # seconds this thread spends in tracking calls (waits on the sender too)

    def _tracked(call: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        try:
            return call()
        finally:
            tracking[0] += time.perf_counter() - t

    def _on_eval(epoch: int, metrics: dict[str, float]) -> None:
        if epoch > start.logged_epoch:  # a resumed run has the earlier ones stored
            _tracked(lambda: sender.log(epoch, metrics))
        if on_eval is not None:
            on_eval(epoch, metrics)

    def _on_checkpoint(epoch: int, state: dict[str, Any]) -> None:
        # Stored from the sender's thread while training goes on (the state is a CPU copy),
        # after the evaluations before it: a checkpoint never claims an unstored evaluation.
        _tracked(lambda: sender.call(
            lambda: ck.save_checkpoint(client, run_id, state, claim=start.claim)))

    try:
        t_data = time.perf_counter()
        idx = sample_subset(dataset.train_labels, row.counts, seed=row.seed)
        train_x, train_y = dataset.train_images[idx], dataset.train_labels[idx]
        eval_idx = eval_subset(dataset.test_labels, config.eval_images,
                               n_classes=dataset.n_classes)
        whole = len(eval_idx) == len(dataset.test_labels)
        data_seconds = time.perf_counter() - t_data
        per_epoch, steps = row_steps(config, len(idx))
        extra = {**params, "subset_hash": subset_hash(idx), "steps_per_epoch": per_epoch,
                 "train_steps": steps, "eval_final_images": len(dataset.test_labels)}
        t_log = time.perf_counter()
        if config.checkpoint_every:
            start = ck.prepare_resume(client, run_id, extra)
        if start.state is None:
            tr.with_retries(lambda: tr.log_params(client, run_id, extra), what="logging params")
            tr.log_row_inputs(client, run_id, dataset=dataset.name, source=config.data_dir,
                              digest=extra["subset_hash"], train_labels=dataset.train_labels[idx],
                              test_labels=dataset.test_labels[eval_idx],
                              class_keys=dataset.class_keys,
                              eval_digest=None if whole else subset_hash(eval_idx))
        elif echo is not None:
            echo(f"row {row.row}: resuming run {run_id} from its checkpoint at epoch "
                 f"{start.state['epoch']}/{config.epochs}")
        tracking[0] += time.perf_counter() - t_log
        result = train_model(
            train_x, train_y, dataset.test_images, dataset.test_labels,
            config=config, class_keys=dataset.class_keys, seed=row.seed,
            mean=dataset.mean, std=dataset.std, callback=_on_eval, on_epoch=on_epoch,
            on_checkpoint=_on_checkpoint if config.checkpoint_every else None,
            resume=start.state, eval_index=None if whole else eval_idx,
        )
        _tracked(sender.close)  # every step is stored before the run ends
        result = dataclasses.replace(result, data_seconds=result.data_seconds + data_seconds,
                                     tracking_seconds=tracking[0])
        check = check_row(result.history, config.epochs, baseline=baseline_accuracy(
            train_x, train_y, dataset.test_images, dataset.test_labels))
        final = {"train_seconds": result.seconds, "images_per_second": result.images_per_second,
                 **result.time_metrics(), **check.metrics()}
        tr.with_retries(lambda: tr.log_metrics(client, run_id, final), what="logging timings")
        tr.with_retries(lambda: tr.tag_row_check(client, run_id, check.verdict),
                        what="tagging the row's checks")
    except BaseException as exc:
        try:
            sender.close()  # keep the evaluations that were made
        except Exception:
            pass
        # A store that just wore out every retry gets no second wait: the row stays RUNNING.
        if not isinstance(exc, tr.TrackingUnavailable):
            try:
                tr.end_row(client, run_id, error=exc, claim=start.claim)
            except Exception:  # the server is gone: the row stays RUNNING until restarted
                pass
        raise
    if tr.end_row(client, run_id, claim=start.claim) and config.checkpoint_every:
        ck.discard_checkpoint(client, run_id)
    return result


@functools.lru_cache(maxsize=2)
def _dataset(name: str, data_dir: str, download: bool) -> Any:
    return load_dataset(name, data_dir=data_dir, download=download)


def _ray_row(tracking_uri: str, row: tr.RowSpec, run_id: str, dataset_name: str,
             config: TrainConfig, threads: int) -> tuple[int, float, float]:
    """Body of one Ray task: train one claimed row (runs in a Ray worker process)."""
    configure_http_retries()
    set_threads(threads)
    client = tr.open_client(tracking_uri)
    dataset = _dataset(dataset_name, config.data_dir, config.download)
    config = resolve_eval(config, dataset)
    settings = resolve_settings(config, image_shape=dataset.image_shape)
    result = run_row(client, row, run_id, dataset=dataset, config=config,
                     params=row_params(config, settings), echo=print)
    return row.row, float(result.final["test_accuracy"]), float(result.seconds)


def train_with_ray(client: MlflowClient, design_id: str, assignments: Sequence[Assignment],
                   config: TrainConfig, *, tracking_uri: str, address: str = "",
                   num_cpus: float = 1.0, echo: Echo = print) -> int:
    """Train rows as Ray tasks; the driver (this process) claims and owns every row.

    Parameters
    ----------
    tracking_uri : str
        The store the tasks log into (an ``http://`` server for tasks on other machines).
    address : str
        Ray cluster address (``ray://host:10001``, ``auto``); empty = ``ray.init()``'s default
        (``$RAY_ADDRESS``, else a local Ray instance started for this run).
    num_cpus : float
        CPUs per task (and torch threads). A task gets ``num_gpus=1`` when ``config.device``
        is ``cuda``, or ``auto`` on a cluster with GPUs.

    Rows are claimed just before their task is submitted, at most as many at once as the
    cluster can run, so a row is RUNNING only while it trains. Tasks are not retried by Ray
    (a retry would log into the same run twice); a row whose task died is ended FAILED and
    the next ``train`` restarts it. Returns how many rows were trained; raises the first
    row's error after the others have finished.
    """
    try:
        import ray
    except ImportError:
        raise MixscaleError(
            "--executor ray needs Ray: pip install 'mixscale[ray]' (or ray>=2.9); "
            "allowed executors without it: 'local'."
        ) from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=True,
                 configure_logging=False)
    try:
        resources = ray.cluster_resources()
        use_gpu = config.device == "cuda" or (config.device == "auto"
                                              and resources.get("GPU", 0) >= 1)
        if use_gpu:
            slots = int(resources.get("GPU", 0))
        else:
            slots = int(resources.get("CPU", 1) // max(num_cpus, 1e-9))
        slots = max(1, slots)
        task = ray.remote(_ray_row).options(num_cpus=num_cpus, num_gpus=1 if use_gpu else 0,
                                            max_retries=0)
        dataset_name = client.get_run(design_id).data.params["dataset"]
        recipe = claim_recipe(config)  # resolved settings are checked by the task
        claims = claimed_rows(client, assignments, config, recipe, skip=echo)
        running, first_error, done, more = {}, None, 0, True
        echo(f"ray: {len(assignments)} row(s), {slots} at once, {num_cpus:g} CPU"
             f"{' + 1 GPU' if use_gpu else ''} per task")
        while more or running:
            while more and len(running) < slots:
                claim = next(claims, None)
                if claim is None:
                    more = False
                    break
                a, run_id = claim
                ref = task.remote(tracking_uri, a.row, run_id, dataset_name, config, int(num_cpus))
                running[ref] = (a.row, run_id)
            if not running:  # every row left was taken by others
                break
            ready, _ = ray.wait(list(running), num_returns=1)
            row, run_id = running.pop(ready[0])
            try:
                _, acc, seconds = ray.get(ready[0])
            except Exception as exc:  # the task raised, or its worker died
                first_error = first_error or exc
                if client.get_run(run_id).info.status == "RUNNING":
                    tr.end_row(client, run_id, error=exc)
                echo(f"row {row.row} ({run_id}) FAILED: {type(exc).__name__}: {exc}")
                continue
            done += 1
            echo(f"[{done}/{len(assignments)}] row {row.row:>3} {row.role:<10} "
                 f"n={row.subset_size:<5} test_accuracy={acc:.3f} ({seconds:.1f} s)")
        if first_error is not None:
            raise first_error
        return done
    finally:
        if started:
            ray.shutdown()


def _partition_job(tracking_uri: str, design_id: str, config: TrainConfig, worker: int,
                   workers: int) -> int:
    """One local worker process of ``train --max-parallel`` (a top-level function: picklable)."""
    set_threads((os.cpu_count() or 1) // workers)
    tr.resolve_tracking_uri(tracking_uri)
    return train_rows(tr.open_client(tracking_uri), design_id, config, worker=worker,
                      workers=workers, tracking_uri=tracking_uri,
                      echo=lambda line: print(f"[worker {worker}] {line}", flush=True))


def train_in_processes(tracking_uri: str, design_id: str, config: TrainConfig, *,
                       max_parallel: int, echo: Echo = print) -> int:
    """Train a design's pending rows with ``max_parallel`` local worker processes.

    Each process is one static partition (``row % max_parallel == i``), so no two share a row,
    and a rerun with the same ``max_parallel`` restarts the RUNNING rows a killed run left
    (each partition's only owner is dead). The tracking store must already exist (the design
    run made it), so no two processes create a brand-new SQLite store at once. Each process
    gets ``cpu_count // max_parallel`` torch threads.

    Returns
    -------
    int
        Rows trained, summed over the processes.
    """
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise MixscaleError(f"`max_parallel` must be an integer >= 1, but got {max_parallel!r}.")
    echo(f"training with {max_parallel} local worker processes")
    with ProcessPoolExecutor(max_parallel, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_partition_job, tracking_uri, design_id, config, i, max_parallel)
                   for i in range(max_parallel)]
        return sum(f.result() for f in futures)


def time_shares(results: Sequence[Any]) -> str:
    """One line saying where the rows' time went, e.g. ``time: data 3%, train 41%, eval 52%,
    tracking 4% of 118 s over 45 rows`` (shares of the sum of the four, from each TrainResult's
    :meth:`~mixscale.train.TrainResult.time_metrics`)."""
    parts = ("data", "train", "eval", "tracking")
    sums = [sum(r.time_metrics()[f"time_{p}_s"] for r in results) for p in parts]
    total = sum(sums)
    exact = [100 * t / max(total, 1e-9) for t in sums]
    shares = [int(e) for e in exact]  # rounded down, then the largest remainders get the rest
    for i in sorted(range(len(parts)), key=lambda i: shares[i] - exact[i])[:100 - sum(shares)]:
        shares[i] += 1
    text = ", ".join(f"{p} {v}%" for p, v in zip(parts, shares, strict=True))
    return f"time: {text} of {total:.0f} s over {len(results)} row(s)"


def train_rows(client: MlflowClient, design_id: str, config: TrainConfig, *,
               run_ids: Sequence[str] | None = None, worker: int = 0, workers: int = 0,
               stale_after: float = 0.0, executor: str = "local", ray_address: str = "",
               ray_cpus: float = 1.0, tracking_uri: str | None = None,
               echo: Echo = print) -> int:
    """Train rows of a design; return how many were trained.

    Parameters
    ----------
    run_ids : sequence of str, optional
        Train only these row runs (``train_row``); by default every pending row (SCHEDULED,
        or FAILED/KILLED, which restart in a fresh run, or with ``config.checkpoint_every``
        resume from their run's checkpoint). FINISHED rows are never retrained.
    worker, workers : int
        Static partition: with ``workers >= 1`` only rows with ``row % workers == worker``,
        and RUNNING rows among them (left by a dead earlier attempt) restart. See
        :mod:`mixscale.stages.rows` for the rules.
    stale_after : float
        Un-partitioned: restart RUNNING rows whose heartbeat is older than this (seconds);
        0 = never.
    executor : {"local", "ray"}
        ``local`` trains rows one after another in this process; ``ray`` runs them as Ray
        tasks (``ray_address``, ``ray_cpus`` CPUs per task) with this process as the driver.
    tracking_uri : str, optional
        The store Ray tasks log into; default ``$MLFLOW_TRACKING_URI``.
    """
    if executor not in EXECUTORS:
        raise MixscaleError(f"unknown executor {executor!r}; allowed: "
                            f"{', '.join(repr(e) for e in EXECUTORS)}.")
    resolve_worker(worker, workers)  # validates the pair
    configure_http_retries()
    rows = tr.list_rows(client, design_id)
    if run_ids is not None:
        wanted = set(run_ids)
        unknown = wanted - {r.run_id for r in rows}
        if unknown:
            raise MixscaleError(f"run(s) {sorted(unknown)} are not current rows of design "
                                f"{design_id}.")
        rows = [r for r in rows if r.run_id in wanted]
        for r in rows:
            if r.status in ("FINISHED", "RUNNING"):
                tr.claim_row(client, r)  # raises the clear "already FINISHED/RUNNING" error
        assignments = [Assignment(r, takeover=False) for r in rows]
    else:
        assignments = select_rows(rows, worker=worker, workers=workers,
                                     stale_after=stale_after)
    if workers:
        echo(f"worker {worker} of {workers}: {len(assignments)} row(s) to train")
    if executor == "ray":
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise MixscaleError("--executor ray needs a tracking URI the tasks can reach "
                                "(--tracking-uri or $MLFLOW_TRACKING_URI); none is set.")
        return train_with_ray(client, design_id, assignments, config, tracking_uri=uri,
                                 address=ray_address, num_cpus=ray_cpus, echo=echo)
    dataset = design_dataset(client.get_run(design_id).data.params,
                             data_dir=config.data_dir, download=config.download)
    config = resolve_eval(config, dataset)  # refused here, before any row is claimed
    settings = resolve_settings(config, image_shape=dataset.image_shape)
    params = row_params(config, settings)
    recipe = claim_recipe(config, settings)
    note = eval_note(config)
    if note and assignments:
        echo(note)
    progress = Progress([a.row.subset_size for a in assignments], echo=echo)
    results = []
    try:
        for a, run_id in claimed_rows(client, assignments, config, recipe,
                                      skip=progress.skip_row):
            row = a.row
            t0 = time.perf_counter()
            label = f"row {row.row:>3} {row.role:<10} n={row.subset_size:<5}"
            progress.start_row(label, config.epochs)
            try:
                result = run_row(client, row, run_id, dataset=dataset, config=config,
                                 params=params, on_eval=progress.on_eval,
                                 on_epoch=progress.on_epoch, echo=progress.log)
            except BaseException as exc:
                progress.log(f"row {row.row} ({run_id}) FAILED: {type(exc).__name__}: {exc}")
                raise
            progress.finish_row(f"{label} test_accuracy={result.final['test_accuracy']:.3f} "
                                f"({time.perf_counter() - t0:.1f} s)")
            results.append(result)
    finally:
        progress.close()
    trained = len(results)
    if results:
        echo(time_shares(results))
    if trained < len(assignments):
        echo(f"{len(assignments) - trained} row(s) were taken by other workers: fit once every "
             "row of the design is FINISHED.")
    return trained


def check_adhoc_counts(dataset: ImageDataset, counts: Sequence[int]) -> np.ndarray:
    """Validate ad-hoc per-class counts against ``dataset``; return them as an int array.

    Raises
    ------
    MixscaleError
        If the number of counts differs from the number of classes, a count is negative or
        above what its class has, or the counts add up to fewer than 2 images.
    """
    counts = [int(n) for n in counts]
    if len(counts) != dataset.n_classes:
        raise MixscaleError(
            f"--counts needs one count per class of {dataset.name!r} ({dataset.n_classes}: "
            f"{', '.join(dataset.class_keys)}), but got {len(counts)}."
        )
    for c, (n, have) in enumerate(zip(counts, dataset.available.tolist(), strict=True)):
        if not 0 <= n <= have:  # checked as Python ints: 10**20 must not overflow int64
            raise MixscaleError(
                f"count of class {dataset.class_names[c]!r} must be in 0..{have} "
                f"(images available), but got {n}."
            )
    counts_arr = np.asarray(counts, dtype=np.int64)
    if counts_arr.sum() < 2:
        raise MixscaleError(f"--counts must add up to >= 2 images, but got {counts_arr.sum()}.")
    return counts_arr


def train_counts(client: MlflowClient, experiment_id: str, dataset_name: str,
                 counts: Sequence[int], config: TrainConfig, *, seed: int = 0,
                 run_id: str | None = None, parent_run_id: str | None = None,
                 dataset: ImageDataset | None = None, echo: Echo = print) -> str:
    """Train ad-hoc per-class counts (no design) in a new run tagged ``mixscale.kind=adhoc``.

    The run carries the same params and metrics as a design row, but it is not a row of any
    design, so ``fit`` never mixes it in. ``run_id`` adopts an existing run instead of creating
    one; ``parent_run_id`` nests the run under another (the launcher run of ``mlflow run -e
    train_row``, or a plan run's verification). ``dataset`` is ``dataset_name`` already loaded
    (by a caller that validated the counts first). Returns the run id.

    Raises
    ------
    MixscaleError
        As :func:`check_adhoc_counts` (checked before the run is created).
    """
    config = dataclasses.replace(config, checkpoint_every=0)  # an ad-hoc run never resumes
    if dataset is None:
        dataset = load_dataset(dataset_name, data_dir=config.data_dir, download=config.download)
    counts_arr = check_adhoc_counts(dataset, counts)
    config = resolve_eval(config, dataset)
    settings = resolve_settings(config, image_shape=dataset.image_shape)  # validates device
    total = int(counts_arr.sum())
    run_id = tr.start_stage_run(client, experiment_id, kind="adhoc",
                                name=f"adhoc-{dataset_name}-n{total}",
                                tags={tr.DATASET: dataset_name}, run_id=run_id,
                                parent_run_id=parent_run_id)
    params = {**{f"n_{k}": int(n) for k, n in zip(dataset.class_keys, counts_arr, strict=True)},
              "total_n": total, "seed": seed, "dataset": dataset_name}
    tr.log_params(client, run_id, params, skip_existing=True)
    row = tr.RowSpec(run_id=run_id, design_id="", row=-1, role="adhoc", subset_size=total,
                     seed=seed, counts=counts_arr, status="RUNNING")
    result = run_row(client, row, run_id, dataset=dataset, config=config,
                        params=row_params(config, settings))
    echo(f"ad-hoc run {run_id}: {total} images, test_accuracy="
         f"{result.final['test_accuracy']:.3f}")
    return run_id
