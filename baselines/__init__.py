"""Classical segmentation methods. Each module registers its methods in bench.methods."""
