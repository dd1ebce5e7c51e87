"""geovr plugin providing the VGGT teacher (``teacher = "vggt"``)."""

__version__ = "0.1.0"
