"""The acquisition planner: the cheapest per-class image counts that reach a target accuracy
(numpy/scipy only; its figure is :func:`mixscale.plots.plan_figure`)."""

from __future__ import annotations

from mixscale.plan.planner import INTERVAL_LEVEL, Plan, default_floor, plan_counts

__all__ = ["Plan", "plan_counts", "default_floor", "INTERVAL_LEVEL"]
