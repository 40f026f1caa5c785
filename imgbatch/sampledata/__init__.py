"""Sample data for the demo, the tests and the benchmarks: real photos that ship inside
scikit-image's wheel, re-encoded, broken on purpose, packed into archives. Not the core."""
