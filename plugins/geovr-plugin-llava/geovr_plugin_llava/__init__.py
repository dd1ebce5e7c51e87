"""geovr plugin: the LLaVA-OneVision student backbone (``backbone.component = "llava_onevision"``).

Importing this package is torch-free; the model code lives in :mod:`geovr_plugin_llava.backbone` and
is imported only when a recipe builds the backbone.
"""

__version__ = "0.1.0"
