"""Deployments of the imgbatch flows: `serve.py` (prefect.serve) and `prefect.yaml` (work pool)."""
