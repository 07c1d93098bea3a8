"""Benchmarks (scripts, not tests). See docs/benchmarks-telegram.md."""
