"""Planning a run: the CSV's rows, partitions and their fingerprints, which partitions are
done, and whether enough of the named images exist to start at all."""
