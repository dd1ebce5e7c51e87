"""The DUSt3R network (imports torch)."""

from geovr_plugin_dust3r.arch import DUSt3RArch
from geovr_plugin_dust3r.model.croco import AsymmetricCroCo3DStereo, DecoderOutput

__all__ = ["AsymmetricCroCo3DStereo", "DecoderOutput", "DUSt3RArch"]
