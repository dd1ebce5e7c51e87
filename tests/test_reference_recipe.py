"""``recipes/qwen_vggt.toml`` carries the released training script's hyper-parameters (scripts/train.sh of
WHB139426/GeoVR-MLLM, its argument defaults and model code), each with a comment naming its source."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from geovr.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# (table path, key) -> the released value
RELEASED = {
    ("backbone", "pretrained"): "Qwen/Qwen3-VL-2B-Instruct",
    ("backbone", "dtype"): "bfloat16",
    ("backbone", "freeze"): ["vision"],
    ("backbone", "max_frames"): 32,
    ("backbone", "video_min_pixels"): 4 * 16 * 32 * 32,
    ("backbone", "video_max_pixels"): 32 * 300 * 32 * 32,
    ("backbone", "max_inference_frames"): 128,
    ("backbone", "inference_frames"): "native",
    ("teacher", "image_size"): 504,
    ("teacher", "resize_mode"): "resize",
    ("backbone", "video_fps"): 2.0,
    ("teacher", "pretrained"): "facebook/VGGT-1B",
    ("teacher", "layers"): [4, 11, 17, 23],
    ("teacher", "feature_half"): "frame",
    ("teacher", "pool"): 2,
    ("metric_teacher", "component"): "da3_metric",
    ("metric_teacher", "pretrained"): "depth-anything/DA3METRIC-LARGE",
    ("metric_teacher", "image_size"): 504,
    ("metric_teacher", "sky_threshold"): 0.3,
    ("trainer", "lr"): 2e-5,
    ("trainer", "head_lr"): 1e-4,
    ("trainer", "weight_decay"): 0.0,
    ("trainer", "betas"): [0.9, 0.999],
    ("trainer", "eps"): 1e-8,
    ("trainer", "warmup_ratio"): 0.03,
    ("trainer", "epochs"): 1,
    ("trainer", "batch_size"): 2,
    ("trainer", "global_batch_size"): 32,
    ("trainer", "max_grad_norm"): 1.0,
    ("trainer", "mixed_precision"): "bf16",
    ("trainer", "gradient_checkpointing"): True,
    ("trainer", "lm_weight"): 1.0,
    ("trainer", "num_workers"): 4,
    ("trainer", "save_every"): 4000,
    ("trainer", "keep_last"): 1,
}
OBJECTIVES = {
    "camera_pose": {
        "weight": 2.5,
        "hidden_dim": 1536,
        "weight_T": 1.0,
        "weight_R": 1.0,
        "weight_FL": 0.5,
        "clamp": 100.0,
    },
    "depth": {
        "weight": 1.0,
        "head": "dense",
        "patch_size": 32,
        "target_patch_size": 28,
        "channels": [256, 512, 1024, 1024],
        "features": 256,
        "loss": "l1_grad",
        "drop_quantile": 0.98,
        "min_elements": 1000,
        "hard_max": 100.0,
        "grad_scales": 4,
        "clamp": 100.0,
    },
    "metric_scale": {
        "weight": 1.0,
        "hidden_dim": 512,
        "use_teacher_conf": True,
        "min_metric_depth": 0.01,
        "min_teacher_depth": 0.001,
        "focal_reference": 300.0,
        "focal_rescale": True,
    },
    "feature_distill": {"weight": 1.0, "hidden_dim": 1024},
}


@pytest.fixture(scope="module")
def raw():
    return tomllib.loads((RECIPES / "qwen_vggt.toml").read_text())


def test_released_values(raw):
    for (table, key), value in RELEASED.items():
        assert raw[table][key] == value, f"{table}.{key} = {raw[table].get(key)!r}, released {value!r}"
    assert "frame_size" not in raw["backbone"]  # frames keep their aspect ratio under the pixel budget
    by_name = {o["component"]: o for o in raw["objectives"]}
    assert sorted(by_name) == sorted(OBJECTIVES)
    for name, expected in OBJECTIVES.items():
        for key, value in expected.items():
            assert by_name[name][key] == value, f"objectives.{name}.{key} = {by_name[name].get(key)!r}"


def test_data_is_the_released_mixture_at_2_fps(raw):
    """train.sh: dataset_use=vsi590k_vlm3r, video_fps=2, 4 to 32 frames; the loaders keep videos only."""
    data = raw["data"]["train"]
    assert data["component"] == "video_conversations"
    assert (data["fps"], data["min_frames"], data["max_frames"], data["video_only"]) == (2.0, 4, 32, True)
    assert [s["name"] for s in data["sources"]] == ["vsi590k", "vlm3r"]
    assert [s["weight"] for s in data["sources"]] == [1.0, 1.0]
    assert data["sources"][1]["data_source_dirs"] == {"scannetpp": "scannetppv2"}
    config = load_recipe(RECIPES / "qwen_vggt.toml").data["train"].config
    assert [s.name for s in config.source_list()] == ["vsi590k", "vlm3r"]
    problems = "\n".join(config.preflight())  # placeholder paths: named, all at once
    assert "vsi590k.annotations: file not found" in problems and "vlm3r.annotations: file not found" in problems


def test_global_batch_32_and_released_accumulation_on_4_processes():
    recipe = load_recipe(RECIPES / "qwen_vggt.toml", require_training=True)
    trainer = recipe.trainer.config
    assert trainer.accumulation(4) == 4  # train.sh: grad_accum_steps=4 on nproc_per_node=4
    assert all(trainer.accumulation(w) * trainer.batch_size * w == 32 for w in (1, 2, 4, 8, 16))


def test_every_value_says_where_it_comes_from():
    """Each key = value line outside [data.*] / [[evaluators]] carries a comment naming its source."""
    section, missing = "", []
    for number, line in enumerate((RECIPES / "qwen_vggt.toml").read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
            continue
        if not re.match(r"^[a-z_]+\s*=", stripped) or section.startswith(("[data", "[[evaluators")):
            continue
        key = stripped.split("=", 1)[0].strip()
        if section == "" and key in ("schema", "name", "description", "output_dir"):
            continue
        if key in ("component", "model") or "#" in line:
            continue
        missing.append(f"{number}: {stripped}")
    assert not missing, "values without a source comment:\n" + "\n".join(missing)
