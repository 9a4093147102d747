"""The fit table from the tracking store (private; re-exported as
:func:`mixscale.track.assemble_table`)."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from mlflow import MlflowClient

from mixscale.errors import MixscaleError
from mixscale.track.rows import design_class_keys, list_rows

__all__ = ["assemble_table"]


def assemble_table(client: MlflowClient, design_ids: Iterable[str], *,
                   metric: str = "test_accuracy", max_workers: int = 16,
                   class_metrics: bool = False) -> pd.DataFrame:
    """The fit table (the paper's Table 6) from the FINISHED rows of one or more designs.

    The rows come from one paged search per design; their metric histories (one request per
    run and metric: MLflow has no public bulk call) are fetched by ``max_workers`` threads.

    With ``class_metrics`` the table also has ``accuracy_<class>``, each row's
    ``<metric>_<class>`` at the same epoch (NaN where a run did not log it), for
    :class:`mixscale.fit.classlaw.ClassLaw`; that costs one more request per run and class.

    Every row must have been scored on the same test images: ``eval_images`` (the number
    each evaluation scored: the ``--eval-images`` subset's size before a row's last
    evaluation, the whole split's at the last) is a column, and rows whose evaluations before
    the last scored different numbers are refused. ``row_check`` is each row's tag
    ``mixscale.row_check`` (``ok``, or why the row did not measure its data; empty for rows
    trained before the checks).

    Returns
    -------
    DataFrame
        Columns ``accuracy, n_<class>..., epoch, total_n, subset_size, eval_images, role,
        run_id, design_id, row_check`` [, ``accuracy_<class>...``], one row per (run, logged
        epoch), sorted by run and epoch.

    Raises
    ------
    MixscaleError
        If the designs have different classes, no row has a history, or the rows were scored
        on different numbers of test images (the message names the values found).
    """
    design_ids = list(design_ids)
    keys = None
    frames = []
    scored: dict[str, int | None] = {}  # run -> test images its evaluations before the last scored
    for design_id in design_ids:
        design_keys = design_class_keys(client, design_id)
        if keys is not None and design_keys != keys:
            raise MixscaleError(
                f"designs have different classes: {keys} vs {design_keys} ({design_id}); "
                "fit designs of one dataset together."
            )
        keys = design_keys
        rows = [r for r in list_rows(client, design_id) if r.status == "FINISHED"]
        names = [metric, *([f"{metric}_{k}" for k in keys] if class_metrics else [])]
        jobs = [(r.run_id, name) for r in rows for name in names]
        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            fetched = list(pool.map(lambda job: client.get_metric_history(*job), jobs))
        per_run = [fetched[i:i + len(names)] for i in range(0, len(fetched), len(names))]
        for row, (history, *by_class) in zip(rows, per_run, strict=True):
            if not history:
                continue
            frame = pd.DataFrame({"accuracy": [m.value for m in history],
                                  "epoch": [m.step for m in history]})
            for key, class_history in zip(keys if class_metrics else [], by_class, strict=True):
                values = {m.step: m.value for m in class_history}
                frame[f"accuracy_{key}"] = frame["epoch"].map(values).astype(float)
            for key, n in zip(keys, row.counts, strict=True):
                frame[f"n_{key}"] = int(n)
            frame["total_n"] = int(row.counts.sum())
            frame["subset_size"] = row.subset_size
            frame["eval_images"] = row.eval_images
            if row.eval_final_images is not None:  # the last evaluation scored the whole split
                frame.loc[frame.index[-1], "eval_images"] = row.eval_final_images
            frame["row_check"] = row.check
            frame["role"] = row.role
            frame["run_id"] = row.run_id
            frame["design_id"] = design_id
            frames.append(frame)
            scored[row.run_id] = row.eval_images
    if not frames:
        raise MixscaleError(
            f"design(s) {', '.join(design_ids)} have no FINISHED rows with a {metric!r} "
            "history; train them first (`mixscale train --design-id ...`)."
        )
    table = pd.concat(frames, ignore_index=True)
    _check_eval_images(pd.Series(scored, dtype=object))
    cols = ["accuracy", *[f"n_{k}" for k in keys], "epoch", "total_n", "subset_size",
            "eval_images", "role", "run_id", "design_id", "row_check",
            *([f"accuracy_{k}" for k in keys] if class_metrics else [])]
    return table[cols].sort_values(["run_id", "epoch"], kind="stable").reset_index(drop=True)


def _check_eval_images(scored: pd.Series) -> None:
    """Refuse rows (``scored``: run id -> param ``eval_images``) scored on different numbers
    of test images."""
    found = scored.where(scored.notna(), "not logged").value_counts(sort=False)
    if len(found) > 1:
        values = ", ".join(f"{v} ({n} row(s))" for v, n in found.items())
        raise MixscaleError(
            f"the rows were scored on different numbers of test images (param eval_images: "
            f"{values}); accuracies on different test images do not belong in one fit: fit "
            "rows trained with one --eval-images together (retrain the others with it).")
