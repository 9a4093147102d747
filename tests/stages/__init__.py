"""Tests of mixscale.stages."""
