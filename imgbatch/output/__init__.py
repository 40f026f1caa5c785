"""Everything under OUT: shards and their done-records, assembly of images.npy and the index,
publishing as one set, one writer and one dataset per output, verify, preview and stats."""
