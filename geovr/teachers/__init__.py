"""The core's own teachers beside the plugins' (VGGT, DUSt3R, Depth Anything 3), registered as a built-in
plugin (:mod:`.plugin`) through the same hooks.

* ``hf_depth`` (:mod:`.hf_depth`): a frozen metric-depth teacher wrapping any transformers
  ``AutoModelForDepthEstimation`` checkpoint, for a recipe's ``[metric_teacher]``; options in
  :mod:`.configs`, the shipped model config (for ``geovr plan``) in ``model_configs/``.

The ``oracle`` teacher (exact ground truth of the synthetic world) lives with that world in
:mod:`geovr.data.oracle`. Importing this package does not import torch.
"""
