"""geovr plugin: Qwen2.5-VL and Qwen3-VL video students with geometry tokens.

Importing this package is torch-free; the backbone lives in :mod:`geovr_plugin_qwen_vl.backbone`,
the offline random-init models (``pretrained = "geovr-tiny"``) in :mod:`geovr_plugin_qwen_vl.tiny_models`,
test helpers on them in :mod:`geovr_plugin_qwen_vl.testing`.
"""

__version__ = "0.1.0"
