"""Test helpers kept inside the project (servers and builders used by several test folders)."""
