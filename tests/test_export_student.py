"""Recipe → train → export on the real tiny Qwen3-VL backbone and the real objectives: the exported
directory is a plain transformers model (LoRA merged, no geometry tokens) that loads and generates."""

from __future__ import annotations

import json

import pytest
import torch

from geovr import hookimpl
from geovr.cli.main import main as geovr_main
from geovr.errors import CheckpointError
from geovr.protocols import GeometryRequest
from geovr.recipe import validate
from geovr.testing import registered, tiny
from geovr.train.export import export, load_student
from geovr.train.runlog import read_metrics
from geovr.train.runner import build_seeded


class TinyParts:
    """Test plugin: a tiny deterministic teacher and video dataset as recipe components."""

    @hookimpl
    def register_teachers(self, register):
        register("tiny_teacher", lambda config, context: tiny.TinyTeacher())

    @hookimpl
    def register_datasets(self, register):
        register("tiny_videos", lambda config, context: tiny.TinyVideos(n=config.get("n", 4), size=32))


def recipe_dict(out, pretrained, **backbone):
    return {
        "name": "tiny_export",
        "seed": 3,
        "output_dir": str(out),
        "backbone": {"component": "qwen3_vl", "pretrained": pretrained, "max_new_tokens": 4, **backbone},
        "teacher": {"component": "tiny_teacher"},
        "objectives": [
            {"component": "camera_pose", "hidden_dim": 16},
            {"component": "feature_distill", "teacher_layers": [2], "student_layers": [1], "hidden_dim": 8},
        ],
        "data": {"train": {"component": "tiny_videos", "n": 4}},
        "trainer": {
            "component": "accelerate",
            "max_steps": 3,
            "batch_size": 2,
            "lr": 1e-3,
            "head_lr": 1e-3,
            "progress": False,
        },
    }


def test_train_then_export_lora_merged_plain_transformers_model(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from geovr_plugin_qwen_vl.testing import cached_tiny_checkpoint, tiny_batch

    pretrained = cached_tiny_checkpoint("qwen3_vl")
    with registered(TinyParts(), "tiny-parts"):
        recipe = validate(recipe_dict(tmp_path / "run", pretrained, lora={"rank": 4, "alpha": 8}))
        ctx = build_seeded(recipe)
        ctx.trainer.fit(ctx)
        assert len(read_metrics(tmp_path / "run")) == 3
        assert (tmp_path / "run" / "recipe.toml").is_file()
        dest = export(tmp_path / "run", tmp_path / "exported")
        assert geovr_main(["export", str(tmp_path / "run"), str(tmp_path / "cli")]) == 0  # the CLI verb
        assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(p.name for p in dest.iterdir())
        # the rebuilt student equals the trained one
        rebuilt, _, ckpt = load_student(tmp_path / "run")
    assert ckpt.name == "step-00000003"
    for (n, a), b in zip(ctx.backbone.named_parameters(), rebuilt.parameters(), strict=False):
        assert torch.equal(a.detach(), b.detach()), n

    files = {p.name for p in dest.iterdir()}
    assert "config.json" in files and any(f.endswith(".safetensors") for f in files)
    from safetensors import safe_open

    keys = set()
    for f in dest.glob("*.safetensors"):
        with safe_open(str(f), "pt") as fh:
            keys |= set(fh.keys())
    assert not any("lora_" in k or "camera_token" in k or "scale_token" in k for k in keys)

    model = AutoModelForImageTextToText.from_pretrained(str(dest)).eval()
    processor = AutoProcessor.from_pretrained(str(dest))
    assert processor is not None and json.loads((dest / "config.json").read_text())["model_type"] == "qwen3_vl"
    batch = tiny_batch(batch_size=1, num_frames=2, size=32)
    student = ctx.backbone.eval()
    with torch.no_grad():
        inputs = student.prepare(batch)
        ours = student(inputs, geometry=GeometryRequest()).logits
        hf = {k: v for k, v in inputs.items() if not k.startswith("_")}
        theirs = model(**hf).logits
        torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)  # LoRA merged = adapter applied
        base = AutoModelForImageTextToText.from_pretrained(pretrained).eval()(**hf).logits
        assert (base - theirs).abs().max() > 1e-3  # the export carries the training, not the base weights
        gen = model.generate(
            **{
                k: v
                for k, v in student.prepare(batch, with_answers=False).items()
                if not k.startswith("_") and k != "labels"
            },
            max_new_tokens=3,
            do_sample=False,
        )
    assert gen.shape[-1] >= 3


def test_export_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="not a geovr run directory"):
        export(tmp_path, tmp_path / "dest")
    (tmp_path / "recipe.toml").write_text('name = "x"\n')
    with pytest.raises(CheckpointError, match="no complete checkpoint found"):
        export(tmp_path, tmp_path / "dest")
