"""animagine-batch: declarative, reproducible generation experiments with Animagine XL 3.1."""

__version__ = "0.1.0"
