"""geovr plugin: Qwen2.5-VL and Qwen3-VL video students with geometry tokens.

Importing this package is torch-free; the backbone lives in :mod:`geovr_plugin_qwen_vl.backbone`,
tiny offline test checkpoints in :mod:`geovr_plugin_qwen_vl.testing`.
"""

__version__ = "0.1.0"
