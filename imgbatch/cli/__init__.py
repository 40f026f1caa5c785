"""The `imgbatch` command: options derived from imgbatch.params, flows imported lazily."""
