"""Benchmarks of the project: `make bench` (benchmarks.run) and the GPU script (benchmarks.gpu_bench)."""
