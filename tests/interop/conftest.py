"""GCS emulator and gsutil fixtures for the interop tests (defined in tests/helpers/gcs.py)."""

from helpers.gcs import gcs, gcs_emulator, gsutil  # noqa: F401
