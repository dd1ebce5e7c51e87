"""geovr plugin: the Depth Anything 3 teachers ``da3`` and ``da3_metric`` (torch-free at import)."""

__version__ = "0.1.0"
