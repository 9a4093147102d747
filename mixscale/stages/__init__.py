"""Orchestration: each pipeline stage as a function of typed configs, a client and run ids.

:mod:`~mixscale.stages.design` logs a design and its rows, :mod:`~mixscale.stages.rows` trains
rows (locally, in processes or as Ray tasks; :mod:`~mixscale.stages.checkpoints` resumes them,
:mod:`~mixscale.stages.progress` shows them), :mod:`~mixscale.stages.fit` fits, logs and
registers the laws, :mod:`~mixscale.stages.verify` trains a plan's counts and compares, and
:mod:`~mixscale.stages.status` says where a design stands. ``mixscale main`` (:mod:`mixscale.cli`)
chains design, train and fit.
"""
