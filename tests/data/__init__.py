"""Tests of mixscale.data."""
