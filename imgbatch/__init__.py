"""imgbatch core: CSV + images -> one row-aligned uint8 array. Never imports Prefect."""

__version__ = "0.1.0"
