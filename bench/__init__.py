"""Benchmarks: model quality against published numbers, throughput and latency (`python -m bench`)."""
