"""Tests of mixscale.fit."""
