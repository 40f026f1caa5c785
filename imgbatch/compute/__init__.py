"""Computing partitions: decode and I/O pools sized to the machine, read-ahead in bounded
windows, and one partition turned into one committed shard."""
