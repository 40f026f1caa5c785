"""Thin Prefect task wrappers around the imgbatch core: retries, concurrency slots, artifacts.

No cache keys: a shard's done-marker is the one record of "done" (docs/ARCHITECTURE.md,
"Reruns and fingerprints").
"""
