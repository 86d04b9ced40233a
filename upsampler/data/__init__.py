"""Training data: image folders, captions, shards."""
