"""Pure numeric aggregation rules: numpy in, numpy out. Knows nothing of chains, files or networks."""
