"""Tests of mixscale.plan."""
