"""Tests of mixscale.track."""
