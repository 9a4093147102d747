"""Tests of mixscale.tune."""
