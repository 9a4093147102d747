"""Orchestration: each pipeline stage as a function of typed configs, a client and run ids."""
