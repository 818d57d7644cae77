"""Search over recent tracks: each track's best crop embeddings and a thumbnail, kept for hours."""
