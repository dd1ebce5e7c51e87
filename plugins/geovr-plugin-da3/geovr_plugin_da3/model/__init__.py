"""Own implementation of the Depth Anything 3 networks geovr needs (torch; imported lazily)."""

from geovr_plugin_da3.model.net import DA3Net

__all__ = ["DA3Net"]
