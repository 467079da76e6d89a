"""Workload-agnostic serving machinery: devices, batching, warmup, errors, lifecycle."""
