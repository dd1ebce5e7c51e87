"""``synthetic_rooms`` through the registry: deterministic samples in the collate format, config checks
(the torch-free plugin import is checked in ``test_torch_free_imports.py``)."""

import pytest
import torch

from geovr import get_registry
from geovr.data.collate import collate
from geovr.data.configs import SyntheticRoomsConfig
from geovr.data.synthetic.dataset import SyntheticRoomsDataset
from geovr.errors import RecipeError

OPTS = {"num_samples": 3, "num_frames": 4, "image_size": [32, 48], "seed": 5, "num_objects": [6, 10]}


def test_samples_are_deterministic_and_collate():
    spec = get_registry().get("dataset", "synthetic_rooms")
    ds = spec.build(dict(OPTS))
    assert len(ds) == 3
    s0, s1 = ds[0], ds[1]
    assert s0["frames"].shape == (4, 3, 32, 48) and s0["frames"].dtype == torch.float32
    assert 0 <= s0["frames"].min() and s0["frames"].max() <= 1
    assert s0["depth"].shape == (4, 32, 48) and (s0["depth"] > 0).all()
    assert s0["intrinsics"].shape == (4, 3, 3) and s0["extrinsics"].shape == (4, 3, 4)
    assert s0["frame_indices"].tolist() == [0, 1, 2, 3]
    assert s0["question"] and s0["answer"] and s0["question_type"] and s0["sample_id"] != s1["sample_id"]
    again = spec.build(dict(OPTS))[0]
    for key in ("frames", "depth", "intrinsics", "extrinsics"):
        assert torch.equal(s0[key], again[key])
    assert (s0["question"], s0["answer"], s0["options"]) == (again["question"], again["answer"], again["options"])
    batch = collate([s0, s1])
    assert batch.frames.shape == (2, 4, 3, 32, 48) and batch.depth.shape == (2, 4, 32, 48)
    assert batch.extrinsics.shape == (2, 4, 3, 4)
    with pytest.raises(IndexError):
        ds[3]


def test_question_type_filter_and_no_geometry():
    ds = (
        get_registry()
        .get("dataset", "synthetic_rooms")
        .build({**OPTS, "question_types": ["room_size_estimation"], "with_geometry": False})
    )
    s = ds[2]
    assert s["question_type"] == "room_size_estimation" and s["options"] is None
    assert float(s["answer"]) >= 10 and "depth" not in s


def test_config_problems_are_reported():
    spec = get_registry().get("dataset", "synthetic_rooms")
    with pytest.raises(RecipeError) as exc:
        spec.parse_config({"image_size": [32], "question_types": ["counting"], "num_objects": [5, 40]})
    text = str(exc.value)
    assert "image_size" in text and "counting" in text and "num_objects" in text
    with pytest.raises(RecipeError, match="num_frame"):
        spec.parse_config({"num_frame": 3})


def test_scene_cache_renders_each_scene_once(tmp_path, monkeypatch):
    """A second dataset with the same world options reads every scene from the cache (no render call)
    and gives identical samples; other options miss; entries are written atomically (no temp files)."""
    from geovr.data.synthetic import cache as cache_mod
    from geovr.data.synthetic import dataset as ds_mod

    calls = []
    real = ds_mod.render
    monkeypatch.setattr(ds_mod, "render", lambda *a, **k: calls.append(1) or real(*a, **k))
    opts = dict(
        num_samples=4,
        num_frames=3,
        image_size=[24, 32],
        num_objects=[4, 6],
        seed=5,
        questions_per_scene=2,
        cache_dir=str(tmp_path / "c"),
    )
    first = SyntheticRoomsDataset(SyntheticRoomsConfig(**opts))
    a = [first[i] for i in range(4)]
    assert len(calls) == 2 and first.cache.misses == 2  # 2 scenes for 4 samples
    second = SyntheticRoomsDataset(SyntheticRoomsConfig(**opts))
    b = [second[i] for i in range(4)]
    assert len(calls) == 2 and second.cache.hits == 4
    plain = SyntheticRoomsDataset(SyntheticRoomsConfig(**{**opts, "cache": False}))
    c = [plain[i] for i in range(4)]
    assert len(calls) == 6  # without the cache every sample renders its scene
    for x, y, z in zip(a, b, c, strict=False):
        for k in ("frames", "depth", "intrinsics", "extrinsics"):
            assert torch.equal(x[k], y[k]) and torch.equal(x[k], z[k]), k
        assert x["question"] == y["question"] == z["question"] and x["answer"] == z["answer"]
    assert a[0]["scene_id"] == a[1]["scene_id"] and a[0]["question"] != a[1]["question"]
    files = sorted(p.name for p in (tmp_path / "c").rglob("*") if p.is_file())
    assert len(files) == 2 and not any(f.startswith(".tmp") for f in files)
    other = SyntheticRoomsDataset(SyntheticRoomsConfig(**{**opts, "image_size": [24, 24]}))
    other[0]
    assert other.cache.misses == 1 and len(calls) == 7  # a different world option is another key
    # a corrupt entry is a miss and is rewritten
    victims = sorted((tmp_path / "c").rglob("*.safetensors"))
    for victim in victims:
        victim.write_bytes(b"garbage")
    assert cache_mod.SceneCache(tmp_path / "c").get({"seed": 1}) is None
    fresh = SyntheticRoomsDataset(SyntheticRoomsConfig(**opts))
    [fresh[i] for i in range(4)]
    assert fresh.cache.misses == 2 and sum(v.read_bytes() != b"garbage" for v in victims) == 2
    assert torch.equal(fresh[0]["frames"], a[0]["frames"])


def test_prompt_option_gives_the_protocol_text(tmp_path):
    from geovr.eval.prompts import doc_prompt

    opts = dict(num_samples=6, num_frames=2, image_size=[24, 24], num_objects=[6, 10], seed=2, cache_dir=str(tmp_path))
    plain = SyntheticRoomsDataset(SyntheticRoomsConfig(**opts))
    asked = SyntheticRoomsDataset(SyntheticRoomsConfig(**opts, prompt="lmms-eval"))
    for i in range(6):
        p, q = plain[i], asked[i]
        doc = {"question": p["question"], "options": p["options"], "question_type": p["question_type"]}
        assert q["question"] == doc_prompt(doc, protocol="lmms-eval") and q["options"] is None
        assert q["answer"] == p["answer"] and q["question"].startswith("These are frames of a video.")
