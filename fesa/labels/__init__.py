"""Frame features, k-means and frame-level pseudo-labels, built on fairseq's simple_kmeans."""
