"""Image reading and writing that loses nothing and never half-writes."""
