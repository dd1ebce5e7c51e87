"""``span``: a clip covering part of the scene's camera path (closer, overlapping views)."""

import numpy as np
import pytest

from geovr import get_registry
from geovr.data.synthetic.camera import make_trajectory, path_frames
from geovr.data.synthetic.scene import generate_scene
from geovr.errors import RecipeError


def _yaw_steps(extrinsics):
    """Angles (degrees) between consecutive views' rotations ``[S-1]``."""
    R = np.asarray(extrinsics)[:, :3, :3]
    rel = np.einsum("sij,skj->sik", R[1:], R[:-1])
    return np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))


def test_path_frames():
    assert path_frames(4, 1.0) == 4
    assert path_frames(4, 0.25) == 13
    assert path_frames(1, 0.1) == 1
    with pytest.raises(ValueError, match="span"):
        path_frames(4, 0.0)


@pytest.mark.parametrize("kind", ["pan", "orbit", "walk"])
def test_span_is_the_start_of_the_longer_path(kind):
    scene = generate_scene(11, (6, 10))
    whole = make_trajectory(scene, 13, (32, 32), 11, kind=kind)
    part = make_trajectory(scene, 4, (32, 32), 11, kind=kind, span=0.25)
    assert part.kind == whole.kind
    np.testing.assert_allclose(part.extrinsics, whole.extrinsics[:4], atol=1e-12)
    short = make_trajectory(scene, 4, (32, 32), 11, kind=kind)  # the whole path in 4 views
    assert _yaw_steps(part.extrinsics).mean() < _yaw_steps(short.extrinsics).mean()


def test_span_changes_the_pixel_key_and_is_checked():
    spec = get_registry().get("dataset", "synthetic_rooms")
    opts = {"num_samples": 1, "num_frames": 3, "image_size": [24, 24], "num_objects": [6, 8], "seed": 2}
    a, b = spec.build(opts)[0], spec.build({**opts, "span": 0.5})[0]
    assert a["pixel_key"] != b["pixel_key"] and '"span":0.5' in b["pixel_key"]
    assert not np.allclose(a["extrinsics"][1:].numpy(), b["extrinsics"][1:].numpy())
    np.testing.assert_allclose(a["extrinsics"][0].numpy(), b["extrinsics"][0].numpy(), atol=1e-6)
    assert '"span"' not in a["pixel_key"]  # the default keeps the keys of existing caches
    for bad in (0, 1.5, -0.2, "half"):
        with pytest.raises(RecipeError, match="span"):
            spec.parse_config({**opts, "span": bad})
