"""Tests of mixscale.serve."""
