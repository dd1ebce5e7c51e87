"""Evaluator registration and recipe options of geovr.eval (its torch-free import: test_torch_free_imports.py)."""

from __future__ import annotations

import pytest

from geovr.errors import RecipeError
from geovr.plugins import get_registry


def test_evaluators_are_registered_with_configs():
    reg = get_registry()
    for name in ("vsibench", "synthetic_qa", "geometry_probe"):
        spec = reg.get("evaluator", name)
        assert spec.distribution == "geovr" and spec.config is not None and spec.summary


def test_evaluate_callback_is_registered():
    spec = get_registry().get("callback", "evaluate")
    assert spec.parse_config({"every": 100}).every == 100
    with pytest.raises(RecipeError, match="every must be >= 0"):
        spec.parse_config({"every": -1})


def test_vsibench_options_validate():
    spec = get_registry().get("evaluator", "vsibench")
    cfg = spec.parse_config({"data_dir": "d", "protocol": "geovr", "num_frames": 128})
    assert (cfg.protocol, cfg.num_frames, cfg.temperature, cfg.top_p, cfg.top_k) == ("geovr", 128, 0.7, 0.8, 20)
    with pytest.raises(RecipeError) as err:
        spec.parse_config({"protocol": "vsi", "num_frame": 8})
    text = str(err.value)
    assert "missing required option 'data_dir'" in text and "did you mean 'num_frames'" in text
    assert "evaluator.protocol: expected" in text
    with pytest.raises(RecipeError) as err:
        spec.parse_config(
            {"data_dir": "d", "num_frames": 0, "top_p": 1.5, "batch_size": 0, "question_types": ["object_direction"]}
        )
    text = str(err.value)
    for needle in (
        "num_frames must be >= 1",
        "top_p must be in (0, 1]",
        "batch_size must be >= 1",
        "question_types: unknown ['object_direction']",
    ):
        assert needle in text


def test_vsibench_frame_count_follows_the_protocol():
    spec = get_registry().get("evaluator", "vsibench")
    assert spec.parse_config({"data_dir": "d"}).num_frames == 32
    assert spec.parse_config({"data_dir": "d", "protocol": "lmms-eval"}).num_frames == 32
    assert spec.parse_config({"data_dir": "d", "protocol": "geovr"}).num_frames == 128  # released NUM_FRAME
    assert spec.parse_config({"data_dir": "d", "protocol": "geovr", "num_frames": 16}).num_frames == 16
    with pytest.raises(RecipeError, match="num_frames: expected"):
        spec.parse_config({"data_dir": "d", "num_frames": "128"})


def test_probe_options_validate():
    spec = get_registry().get("evaluator", "geometry_probe")
    assert spec.parse_config({}).dataset == "synthetic_rooms"
    with pytest.raises(RecipeError, match="train_fraction must be in"):
        spec.parse_config({"train_fraction": 1.0})
    with pytest.raises(RecipeError, match="num_samples must be >= 2"):
        spec.parse_config({"num_samples": 1})
