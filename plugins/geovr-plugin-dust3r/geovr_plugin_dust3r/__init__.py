"""geovr plugin: the DUSt3R teacher (torch-free at import)."""

__version__ = "0.1.0"
