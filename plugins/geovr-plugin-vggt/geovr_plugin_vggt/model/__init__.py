"""VGGT re-implementation (official parameter names): ``from geovr_plugin_vggt.model import VGGT``."""

from geovr_plugin_vggt.model.vggt import VGGT, VGGT_1B_CONFIG, load_config

__all__ = ["VGGT", "VGGT_1B_CONFIG", "load_config"]
