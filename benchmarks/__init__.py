"""Benchmarks against the running local stack (`make bench`); not tests. See docs/benchmarks.md."""
