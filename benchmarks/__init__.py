"""Benchmarks: scripts, not timed tests. Each documents its command and figures under docs/."""
