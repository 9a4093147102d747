"""The ``mixscale`` command line: click commands (:mod:`~mixscale.cli.commands`) and the option
blocks, config builders and tracking session they share (:mod:`~mixscale.cli.options`).

``mixscale --help`` stays cheap: the commands import the stages they run when they run.
"""

from __future__ import annotations

from mixscale.cli import commands
from mixscale.cli.commands import *  # noqa: F403  (a face: it hands every command on)

__all__ = commands.__all__
