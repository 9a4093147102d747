"""The ``mixscale`` command line: click commands (:mod:`~mixscale.cli.commands`) and the option
blocks, config builders and tracking session they share (:mod:`~mixscale.cli.options`).

``mixscale --help`` stays cheap: the commands import the stages they run when they run.
"""

from __future__ import annotations

from mixscale.cli.commands import (
    cli,
    design_cmd,
    entry_point,
    fit_cmd,
    main,
    main_cmd,
    plan_cmd,
    status_cmd,
    train_cmd,
    train_row_cmd,
    tune_cmd,
)

__all__ = ["cli", "main", "design_cmd", "train_row_cmd", "train_cmd", "fit_cmd", "main_cmd",
           "tune_cmd", "plan_cmd", "status_cmd", "entry_point"]
