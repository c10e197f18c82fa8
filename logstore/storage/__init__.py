"""Storage layer: I/O seam, indexes, segments, partition logs, checkpoints."""
