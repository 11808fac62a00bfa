"""Helpers for tests, benchmarks and the demo: real media from registry packages, clip writers."""
