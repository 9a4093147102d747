"""Tests of mixscale.design."""
