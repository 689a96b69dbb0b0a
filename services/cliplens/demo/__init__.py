"""The project's demo: a small CLIP trained on CIFAR-10 by cliplens, and the `make demo` pipeline."""
