"""Tests of mixscale.cli."""
