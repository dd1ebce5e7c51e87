"""Released GeoVR model directories: ``geovr eval --model`` ignores the method's extra modules,
``geovr import`` maps tokens and heads into geovr's objectives by name, and training starts from them.

The released directory is written here in the released layout: a tiny random Qwen3-VL saved by
transformers plus tensors under the released module names, produced by modules built like the released
ones (``camera_head``, ``scale_head``, ``distill_head_list``; the dense head is geovr's ``DenseHead``, whose
names and outputs match the released ``dpt_head``, see ``tests/test_dense_head.py``) and teacher tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402

from geovr.cli.main import build_parser, main  # noqa: E402
from geovr.errors import CheckpointError, UsageError  # noqa: E402
from geovr.objectives.heads import DenseHead  # noqa: E402
from geovr.plugins import load_plugins  # noqa: E402
from geovr.recipe import load_recipe  # noqa: E402
from geovr.recipe.dump import to_toml  # noqa: E402
from geovr.recipe.load import find_shipped, load_raw  # noqa: E402
from geovr.train import released  # noqa: E402
from geovr.train.runner import build_seeded  # noqa: E402

qwen_testing = pytest.importorskip("geovr_plugin_qwen_vl.testing")
qwen_tiny_models = pytest.importorskip("geovr_plugin_qwen_vl.tiny_models")

CAM_HIDDEN, SCALE_HIDDEN, FEAT = 24, 16, 16  # released: 1536, 512, teacher width; tiny here
CHANNELS, FEATURES = (8, 8, 16, 16), 8


class ReleasedCameraDec(nn.Module):
    """Built like the released ``camera_head`` (``backbone`` trunk, ``fc_t``, ``fc_qvec``, ``fc_fov``)."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.fc_t, self.fc_qvec = nn.Linear(hidden, 3), nn.Linear(hidden, 4)
        self.fc_fov = nn.Sequential(nn.Linear(hidden, 2), nn.ReLU())

    def forward(self, x):
        h = self.backbone(x)
        return torch.cat([self.fc_t(h), self.fc_qvec(h), self.fc_fov(h)], dim=-1)


class ReleasedScaleHead(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.backbone = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, x):
        return torch.exp(self.backbone(x).squeeze(-1))


class ReleasedDistillHead(nn.Module):
    def __init__(self, dim, out):
        super().__init__()
        self.norm, self.fc1, self.act, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, out), nn.GELU(), nn.Linear(out, out)

    def forward(self, grid, size):
        B, T, h, w, D = grid.shape
        x = grid.reshape(B * T, h, w, D).permute(0, 3, 1, 2)
        x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = x.permute(0, 2, 3, 1).reshape(B, T, size[0], size[1], D)
        return self.fc2(self.act(self.fc1(self.norm(x))))


def _randomise(module, gen):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return module.eval()


@pytest.fixture(scope="module")
def released_dir(tmp_path_factory):
    """``(directory, reference modules, D)``: a tiny Qwen3-VL in the released GeoVR layout."""
    root = tmp_path_factory.mktemp("released")
    model_dir = Path(qwen_tiny_models.save_tiny_checkpoint("qwen3_vl", root / "GeoVR-tiny"))
    cfg = json.loads((model_dir / "config.json").read_text())
    D = int(cfg["text_config"]["hidden_size"])
    cfg.update(
        {
            "add_camera": True,
            "add_depth": True,
            "add_scale": True,
            "distill_geometry_feature": True,
            "geo_type": "vggt",
            "geo_indexes": [4, 11, 17, 23],
        }
    )
    (model_dir / "config.json").write_text(json.dumps(cfg))
    g = torch.Generator().manual_seed(7)
    refs = {
        "camera": _randomise(ReleasedCameraDec(D, CAM_HIDDEN), g),
        "scale": _randomise(ReleasedScaleHead(D, SCALE_HIDDEN), g),
        "dense": _randomise(DenseHead(D, 32, 28, features=FEATURES, out_channels=CHANNELS), g),
        "distill": [_randomise(ReleasedDistillHead(D, FEAT), g) for _ in range(4)],
    }
    extra = {
        "model.camera_token.weight": torch.randn(2, D, generator=g),
        "model.scale_token.weight": torch.randn(1, D, generator=g),
        "geometry_encoder.aggregator.patch_embed.weight": torch.randn(4, 3, generator=g),  # a frozen teacher
        "metric_encoder.model.head.weight": torch.randn(2, generator=g),
    }
    for prefix, module in (
        ("camera_head.", refs["camera"]),
        ("scale_head.", refs["scale"]),
        ("dpt_head.", refs["dense"]),
    ):
        extra.update({prefix + k: v for k, v in module.state_dict().items()})
    for i, head in enumerate(refs["distill"]):
        extra.update({f"distill_head_list.{i}.{k}": v for k, v in head.state_dict().items()})
    weights = model_dir / "model.safetensors"
    state = load_file(str(weights))
    save_file({**state, **{k: v.contiguous() for k, v in extra.items()}}, str(weights), metadata={"format": "pt"})
    return model_dir, refs, extra, D


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The tiny synthetic recipe with a Qwen3-VL student and head sizes of the released layout above."""
    raw = load_raw(find_shipped("tiny_synthetic"))
    raw["backbone"]["component"] = "qwen3_vl"
    sizes = {
        "camera_pose": {"hidden_dim": CAM_HIDDEN},
        "metric_scale": {"hidden_dim": SCALE_HIDDEN},
        "depth": {"channels": list(CHANNELS), "features": FEATURES, "head": "dense"},
        "feature_distill": {"hidden_dim": FEAT},
    }
    for obj in raw["objectives"]:
        obj.update(sizes[obj["component"]])
    raw["teacher"]["feature_dim"] = FEAT
    raw["trainer"].update({"max_steps": 1, "save_every": 0, "progress": False})
    raw.pop("evaluators", None)
    path = tmp_path_factory.mktemp("template") / "tiny_qwen3.toml"
    path.write_text(to_toml(raw))
    return path


def test_layout_is_classified_and_heads_are_renamed(released_dir):
    model_dir, _, extra, _ = released_dir
    groups = released.classify(released.tensor_names(model_dir))
    assert sorted(groups["tokens"]) == sorted(released.TOKENS)
    assert len(groups["teachers"]) == 2 and groups["base"] and all(not k.startswith("dpt_head") for k in groups["base"])
    assert released.is_released(model_dir)
    line = released.unused_summary(model_dir)
    assert line.startswith(f"released GeoVR model: {len(extra)} tensors not used at inference are ignored")
    for part in ("camera_head", "dpt_head", "geometry_encoder", "metric_encoder", "model.camera_token"):
        assert part in line
    heads = released.map_heads(released.read_extras(model_dir))
    assert set(heads["camera_pose"]) == {
        "head.trunk.0.weight",
        "head.trunk.0.bias",
        "head.trunk.1.weight",
        "head.trunk.1.bias",
        "head.trunk.3.weight",
        "head.trunk.3.bias",
        "head.fc_T.weight",
        "head.fc_T.bias",
        "head.fc_R.weight",
        "head.fc_R.bias",
        "head.fc_FL.weight",
        "head.fc_FL.bias",
    }
    assert "heads.3.mlp.3.weight" in heads["feature_distill"] and "head.proj.weight" in heads["depth"]
    with pytest.raises(CheckpointError, match="unknown layout"):
        released.map_heads({"camera_head.extra.weight": torch.zeros(1)})


def test_import_loads_heads_that_compute_what_the_released_modules_compute(released_dir, template, tmp_path):
    model_dir, refs, extra, D = released_dir
    run = tmp_path / "run"
    assert main(["import", str(model_dir), str(run), "--recipe", str(template), "--json"]) == 0
    report = json.loads((run / "released" / "import.json").read_text())
    assert report["heads"] == {
        "camera_pose": 12,
        "depth": len(refs["dense"].state_dict()),
        "feature_distill": 24,
        "metric_scale": 6,
    }
    assert report["ignored_teacher_tensors"] == 2 and report["released_config"]["geo_type"] == "vggt"
    recipe = load_recipe(run / "recipe.toml", require_training=True)
    assert recipe.raw["backbone"]["pretrained"] == str((run / "base").resolve())
    assert not released.is_released(run / "base") and "add_camera" not in json.loads(
        (run / "base" / "config.json").read_text()
    )
    assert recipe.raw["trainer"]["init_from"] == str((run / "released").resolve())
    ctx = build_seeded(recipe)
    loaded = released.load_init(run / "released", ctx.backbone, ctx.objectives)
    assert set(loaded) == {"camera_tokens", "scale_token", "camera_pose", "depth", "metric_scale", "feature_distill"}
    torch.testing.assert_close(ctx.backbone.camera_tokens.weight, extra["model.camera_token.weight"])
    torch.testing.assert_close(ctx.backbone.scale_token.weight, extra["model.scale_token.weight"])
    objs = {o.name: o for o in ctx.objectives}
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        cam = torch.randn(2, 3, D, generator=g)
        torch.testing.assert_close(objs["camera_pose"].head(cam), refs["camera"](cam))
        tok = torch.randn(2, D, generator=g)
        torch.testing.assert_close(objs["metric_scale"].head(tok), refs["scale"](tok))
        grid = torch.randn(1, 2, 3, 4, D, generator=g)
        for head, ref in zip(objs["feature_distill"].heads, refs["distill"], strict=False):
            torch.testing.assert_close(head(grid, (5, 6)), ref(grid, (5, 6)))
        hidden = [torch.randn(1, 2, 12, D, generator=g) for _ in range(4)]
        torch.testing.assert_close(
            objs["depth"].head(hidden, (96, 128), (84, 112)), refs["dense"](hidden, (96, 128), (84, 112))
        )


@pytest.mark.slow
def test_training_starts_from_the_imported_model(released_dir, template, tmp_path):
    """`geovr run RUN_DIR/recipe.toml` with zero learning rates: the saved checkpoint holds exactly the
    released heads and tokens (trainer.init_from loaded them before the first step)."""
    model_dir, _, extra, _ = released_dir
    run = tmp_path / "run"
    assert main(["import", str(model_dir), str(run), "--recipe", str(template)]) == 0
    assert main(["run", str(run / "recipe.toml"), "trainer.lr=0.0", "trainer.head_lr=0.0"]) == 0
    ckpt = sorted((run / "checkpoints").iterdir())[-1]
    heads = load_file(str(ckpt / "objectives.safetensors"))
    imported = load_file(str(run / "released" / "heads.safetensors"))
    order = [o["component"] for o in load_raw(run / "recipe.toml")["objectives"]]
    for key, value in imported.items():
        obj, rest = key.split(".", 1)
        torch.testing.assert_close(heads[f"{order.index(obj)}.{rest}"], value)
    model = load_file(str(ckpt / "model.safetensors"))
    torch.testing.assert_close(model["camera_tokens.weight"], extra["model.camera_token.weight"])


def test_mismatched_recipe_and_bad_directories_are_named(released_dir, template, tmp_path, capsys):
    model_dir, *_ = released_dir
    run = tmp_path / "run"
    assert main(["import", str(model_dir), str(run), "--recipe", str(template)]) == 0
    assert main(["import", str(model_dir), str(run), "--recipe", str(template)]) == 2  # already imported
    assert "--overwrite" in capsys.readouterr().err
    recipe = load_recipe(run / "recipe.toml", ["objectives.0.hidden_dim=8"], require_training=True)
    ctx = build_seeded(recipe)
    with pytest.raises(CheckpointError, match="released camera_pose head does not match"):
        released.load_init(run / "released", ctx.backbone, ctx.objectives)
    plain = Path(qwen_testing.cached_tiny_checkpoint("qwen3_vl"))
    with pytest.raises(UsageError, match="no released GeoVR modules"):
        released.import_released(plain, tmp_path / "plain", recipe=template)
    assert not released.is_released(plain)
    assert main(["import", str(tmp_path / "nothing"), str(tmp_path / "r2")]) == 2


def test_eval_model_ignores_the_extra_modules_in_one_line(released_dir, tmp_path, capsys):
    model_dir, *_ = released_dir
    code = main(
        [
            "eval",
            "--model",
            str(model_dir),
            "--evaluator",
            "synthetic_qa",
            "--output",
            str(tmp_path / "ev"),
            "--json",
            "max_new_tokens=2",
            "progress=false",
            "dataset_options={num_samples = 2, num_frames = 2, image_size = [32, 32]}",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [ln for ln in captured.err.splitlines() if "not used at inference" in ln]
    assert len(lines) == 1 and "dpt_head" in lines[0]
    assert "unexpected" not in captured.err.lower()
    assert "overall" in json.loads(captured.out)["synthetic_qa"]


def test_documented_vsibench_command_parses():
    """The command of docs/released.md that checks a GPU set-up against the paper (69.1)."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "released.md").read_text()
    line = next(ln.strip() for ln in doc.splitlines() if ln.strip().startswith("geovr eval --model"))
    assert "protocol=geovr" in line and "num_frames=128" in line
    args = build_parser(load_plugins()).parse_args(line.split()[1:])
    assert args.model and args.evaluator == ["vsibench"] and args.data
    options = [args.recipe, *args.overrides] if args.recipe else args.overrides  # eval.run moves a key=value
    assert {"protocol=geovr", "num_frames=128"} <= set(options)  # given as RECIPE to the options
    assert {"max_frames=128", "dtype=bfloat16"} <= set(args.backbone_option)
