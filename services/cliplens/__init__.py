"""cliplens: explain CLIP with sparse autoencoders and attribution, served on Ray Serve."""

__version__ = "0.1.0"
