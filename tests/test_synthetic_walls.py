"""``walls = "compass"``: each wall of every room in its own fixed hue (a view shows its heading)."""

import math

import numpy as np
import pytest

from geovr import get_registry
from geovr.data.synthetic.camera import camera_extrinsics, intrinsics_from_fov
from geovr.data.synthetic.dataset import render_scene
from geovr.data.synthetic.render import render
from geovr.data.synthetic.scene import COMPASS_HUES, Room, Scene, compass_walls, generate_scene
from geovr.errors import RecipeError


def _chroma(rgb):
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb / rgb.sum(-1, keepdims=True)


# heading (radians) -> index of the wall plane the camera faces (x=0, x=L, y=0, y=W)
@pytest.mark.parametrize(("yaw", "plane"), [(0.0, 1), (math.pi / 2, 3), (math.pi, 0), (-math.pi / 2, 2)])
def test_each_wall_shows_its_own_hue(yaw, plane):
    walls = compass_walls((0.86, 0.84, 0.78))
    scene = Scene("empty", Room(4.0, 4.0, 2.6, wall_colors=walls), [])
    K = intrinsics_from_fov(60.0, 32, 32)[None]
    E = camera_extrinsics((2.0, 2.0, 1.3), yaw, 0.0)[None]
    rgb = render(scene, K, E, (32, 32))["rgb"][0, :, 10:22, 10:22]  # [3,12,12] the middle of the facing wall
    seen = _chroma(rgb.mean((1, 2)).numpy())
    dist = [np.abs(seen - _chroma(c)).sum() for c in walls]
    assert int(np.argmin(dist)) == plane
    assert dist[plane] < 1e-2  # shading scales the three channels alike: the chromaticity is the wall's


def test_compass_changes_the_wall_pixels_only():
    _, plain = render_scene(5, num_objects=(6, 8), num_frames=3, image_size=(48, 48))
    _, comp = render_scene(5, num_objects=(6, 8), num_frames=3, image_size=(48, 48), walls="compass")
    for key in ("depth", "ids", "extrinsics", "intrinsics"):
        assert (plain[key] == comp[key]).all(), key
    assert plain["records"] == comp["records"] and plain["kind"] == comp["kind"]
    objects = (plain["ids"] > 0)[..., None].expand_as(plain["rgb"])
    assert (plain["rgb"][objects] == comp["rgb"][objects]).all()  # objects keep their colours
    assert (plain["rgb"] != comp["rgb"]).any()


def test_compass_walls_are_distinct_and_round_trip():
    scene = generate_scene(3, (6, 8), walls="compass")
    plain = generate_scene(3, (6, 8))
    assert plain.room.wall_colors is None and plain.room.plane_wall_colors() == [plain.room.wall_color] * 4
    cols = scene.room.plane_wall_colors()
    assert len({tuple(c) for c in cols}) == 4
    assert scene.room.wall_colors == compass_walls(plain.room.wall_color) and len(COMPASS_HUES) == 4
    assert scene.objects == plain.objects  # the walls draw nothing from the seed
    back = Scene.from_dict(scene.to_dict())
    assert back.room == scene.room
    with pytest.raises(ValueError, match="walls"):
        generate_scene(3, (6, 8), walls="striped")


def test_walls_key_the_pixels_and_the_cache_and_are_checked(tmp_path):
    spec = get_registry().get("dataset", "synthetic_rooms")
    opts = {"num_samples": 1, "num_frames": 2, "image_size": [24, 24], "num_objects": [6, 8], "seed": 2}
    opts["cache_dir"] = str(tmp_path)
    a, b = spec.build(opts)[0], spec.build({**opts, "walls": "compass"})[0]
    assert '"walls"' not in a["pixel_key"]  # the default keeps the keys of existing caches
    assert a["pixel_key"] != b["pixel_key"] and '"walls":"compass"' in b["pixel_key"]
    assert not np.allclose(a["frames"].numpy(), b["frames"].numpy())
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2  # one entry each, never one served for the other
    again = spec.build({**opts, "walls": "compass"})[0]
    assert (again["frames"] == b["frames"]).all()
    with pytest.raises(RecipeError, match="walls"):
        spec.parse_config({**opts, "walls": "striped"})
