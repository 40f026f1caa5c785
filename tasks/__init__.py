"""Thin Prefect task wrappers around the imgbatch core: retries, cache keys, artifacts."""
