"""GCS emulator fixtures for the fault tests (defined in tests/helpers/gcs.py)."""

from helpers.gcs import faulty_gcs, gcs, gcs_emulator  # noqa: F401
