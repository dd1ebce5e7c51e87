"""The four GeoVR objectives and their heads, registered as a built-in plugin (:mod:`.plugin`).

===================  =========================================  ==============================  ======
component            head (input → output)                      requires (teacher outputs)      weight
===================  =========================================  ==============================  ======
``camera_pose``      camera tokens ``[B,S,D]`` → pose ``[B,S,9]``  pose_enc                        2.5
``depth``            4 visual grids → depth ``[B,S,H,W]`` (DPT)   depth                           1
``metric_scale``     scale token ``[B,D]`` → ``Ŝ`` ``[B]``        depth, depth_conf, metric_depth  1
``feature_distill``  grids → teacher features ``[B,S,h,w,C]``     features                        1
===================  =========================================  ==============================  ======

Modules: :mod:`.configs` (recipe options, torch-free), :mod:`.layers` (teacher → student layer
mapping, torch-free), :mod:`.losses` (pure loss functions and metrics), :mod:`.heads` (MLP and DPT
heads) and :mod:`.objectives` (the ``nn.Module`` objectives and their factories). The ``hf_depth``
metric-depth teacher lives in :mod:`geovr.teachers`.

Importing this package does not import torch.
"""

from geovr.objectives.layers import map_teacher_layers

_LOSSES = ("camera_pose_loss", "depth_loss", "scale_target", "scale_loss", "cosine_distill_loss")
__all__ = ["map_teacher_layers", *_LOSSES]


def __getattr__(name: str):
    """The loss functions load torch on first use (``from geovr.objectives import depth_loss``)."""
    if name in _LOSSES:
        from geovr.objectives import losses

        return getattr(losses, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
