"""Helpers the tests (and the benchmarks) share: free ports, servers, databases, claim races."""
