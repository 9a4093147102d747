"""Tests of mixscale.train."""
