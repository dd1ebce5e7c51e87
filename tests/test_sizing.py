"""The sizing interface (:mod:`geovr.sizing`): the core imports no plugin; every shipped recipe can be
planned and its cache estimated; the layouts the teachers declare match what their real tiny versions
write; a component without the interface stops `geovr plan` / `cache --estimate` with exit 2 and a message
naming it, its plugin and distribution."""

from __future__ import annotations

import ast
import json
import types
from pathlib import Path

import attrs
import pytest

from geovr import hookimpl
from geovr.cli.main import main as cli_main
from geovr.recipe import load_recipe
from geovr.sizing import SizingError
from geovr.train.estimate import _feature_layers, estimate_cache
from geovr.train.plan import plan
from geovr.train.runner import build_seeded
from geovr.train.teacher_cache import precompute

ROOT = Path(__file__).resolve().parents[1]
# every shipped recipe (recipes/ablation/ablation.toml holds the settings of `geovr ablate`, not a recipe)
RECIPES = sorted(
    [*ROOT.glob("recipes/*.toml"), *(p for p in ROOT.glob("recipes/ablation/*.toml") if p.name != "ablation.toml")]
)


def plugin_imports(source: str, name: str = "<src>") -> list[str]:
    """``file:line: module`` of every import of a ``geovr_plugin_*`` module in ``source`` (``import``,
    ``from ... import``, ``importlib.import_module("...")`` / ``__import__("...")`` with a literal)."""
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names = [str(node.args[0].value)]
        found += [f"{name}:{node.lineno}: {n}" for n in names if n.startswith("geovr_plugin_")]
    return found


def test_the_core_imports_no_plugin():
    offenders = []
    for path in sorted((ROOT / "geovr").rglob("*.py")):
        offenders += plugin_imports(path.read_text(), str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_guard_sees_every_import_form():
    src = (
        "import os\nfrom geovr_plugin_vggt.model import VGGT\n"
        "def f():\n    import geovr_plugin_da3.arch\n    return importlib.import_module('geovr_plugin_llava')\n"
    )
    assert [x.split(": ")[1] for x in plugin_imports(src)] == [
        "geovr_plugin_vggt.model",
        "geovr_plugin_da3.arch",
        "geovr_plugin_llava",
    ]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_plans_and_estimates(recipe, capsys):
    assert len(RECIPES) >= 5
    assert cli_main(["plan", str(recipe), "--entries", "7", "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    r = load_recipe(recipe, require_training=True)
    assert p["params_trainable"] > 0
    frozen_parts = bool(r.backbone.options.get("freeze")) or any(
        getattr(r, role) is not None and getattr(r, role).component != "oracle"
        for role in ("teacher", "metric_teacher")
    )
    assert (p["params_frozen"] > 0) == frozen_parts  # nothing frozen: a fully trained student + the oracle
    assert p["cache"]["entries"] == 7 and p["cache"]["bytes_per_entry"] > 0
    assert p["activations_per_sample"]["visual_tokens"] > 0 and p["per_gpu_bytes"]["fsdp"] > 0
    for role in ("teacher", "metric_teacher"):
        if getattr(r, role) is not None and getattr(r, role).component != "oracle":
            assert p["params"][f"{role}_frozen"] > 0, role
    assert cli_main(["cache", str(recipe), "--estimate", "--entries", "7", "--json"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["entries"] == 7 and e["total_bytes"] == 7 * e["bytes_per_entry"]
    assert set(e["bytes_by_output"]) == {role for role in ("teacher", "metric_teacher") if getattr(r, role)}


def test_reference_recipe_counts_the_metric_teacher_it_names():
    p = plan(load_recipe(ROOT / "recipes" / "qwen_vggt.toml", require_training=True), entries=1, measure_heads=False)
    assert p["params"]["metric_teacher_frozen"] == 334_171_394  # DA3METRIC-LARGE
    assert p["params"]["teacher_frozen"] == pytest.approx(1.158e9, rel=0.01)
    assert p["cache"]["bytes_by_output"]["metric_teacher"]["scale"] == 32 * 392 * 504 * 4  # 32 frames at 392x504
    # the core's own hf_depth metric teacher (Depth Anything V2 Metric Indoor Large), at the frames' size
    hf = plan(
        load_recipe(
            ROOT / "recipes" / "qwen_vggt.toml",
            ['metric_teacher={component="hf_depth", model="depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf"}'],
            require_training=True,
        ),
        entries=1,
        measure_heads=False,
    )
    assert hf["params"]["metric_teacher_frozen"] == pytest.approx(0.335e9, rel=0.01)
    assert hf["cache"]["bytes_by_output"]["metric_teacher"]["scale"] == 32 * 480 * 640 * 4


@pytest.mark.parametrize(
    "recipe,extra",
    [
        ("tiny_vggt", []),
        ("tiny_da3", []),
        (
            "tiny_vggt",
            [
                'teacher={component="dust3r", pretrained="", model_config="tiny", image_size=224, '
                'alignment="oneref", layers=[0, 1, 2, 3]}'
            ],
        ),
    ],
)
def test_declared_layout_matches_what_the_real_tiny_teacher_writes(tmp_path, recipe, extra):
    overrides = [
        "data.train.num_samples=2",
        "data.train.num_frames=3",
        "data.train.image_size=[48,64]",
        f'trainer.cache_dir="{tmp_path / "c"}"',
        *extra,
    ]
    r = load_recipe(ROOT / "recipes" / f"{recipe}.toml", overrides, require_training=True)
    ctx = build_seeded(r, stages=("teacher", "metric_teacher", "data"))
    est = estimate_cache(r, datasets=ctx.datasets)
    precompute(ctx, progress=False)
    files = sorted((tmp_path / "c").rglob("*.safetensors"))
    assert est["entries"] == 2 and len(files) == 2 * len(est["bytes_by_output"])  # one file per entry and teacher
    actual = sum(f.stat().st_size for f in files)
    assert est["total_bytes"] == pytest.approx(actual, rel=0.02), (est["bytes_by_output"], actual)
    from safetensors import safe_open

    S, H, W = est["frames"]
    expected = []
    for choice in (r.teacher, r.metric_teacher):
        if choice is not None:
            lay = choice.config.cache_layout(S, H, W, _feature_layers(r, choice))
            expected.append({k: tuple(v) for k, v in lay.shapes.items()})
    for f in files:  # each file holds exactly one teacher's declared outputs at their declared shapes
        with safe_open(str(f), "pt") as st:
            seen = {k: tuple(st.get_slice(k).get_shape()) for k in st.keys()}
        assert seen in expected, (f.name, seen, expected)


def test_llava_backbone_plans_from_a_local_checkpoint(tmp_path, capsys):
    from geovr_plugin_llava.testing import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(str(tmp_path / "llava"))
    over = [f'backbone={{component="llava_onevision", pretrained="{ckpt}", dtype="float32", freeze=["vision"]}}']
    assert cli_main(["plan", str(ROOT / "recipes" / "tiny_synthetic.toml"), *over, "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    from geovr_plugin_llava.testing import tiny_backbone

    real = tiny_backbone(ckpt)
    n_real = sum(x.numel() for x in real.parameters())
    assert p["params"]["student_trainable"] + p["params"]["student_frozen"] == n_real
    frozen = sum(x.numel() for x in real.parameters() if not x.requires_grad)
    assert p["params"]["student_frozen"] == frozen
    S = p["activations_per_sample"]["frames"][0]
    assert p["activations_per_sample"]["visual_tokens"] == S * real.grid[0] * real.grid[1] + 1


@attrs.define
class _NoSizeConfig:
    scale: float = 1.0

    def provides(self) -> frozenset[str]:
        return frozenset({"metric_depth"})


@pytest.fixture
def unsized_plugin():
    from geovr.plugins import load_plugins

    @hookimpl
    def register_teachers(register):
        register("unsized_depth", "geovr.sizing:CacheLayout", config=_NoSizeConfig)

    host = load_plugins()
    host.register_object(
        types.SimpleNamespace(register_teachers=register_teachers),
        "unsized_plugin",
        distribution="geovr-plugin-unsized",
    )
    yield
    host.unregister("unsized_plugin")


@pytest.mark.parametrize("verb", [["plan"], ["cache", "--estimate"]])
def test_a_teacher_without_the_interface_is_named_with_exit_2(unsized_plugin, capsys, verb):
    recipe = str(ROOT / "recipes" / "tiny_synthetic.toml")
    code = cli_main([verb[0], recipe, 'metric_teacher={component="unsized_depth"}', *verb[1:], "--entries", "3"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "teacher 'unsized_depth'" in err and "plugin 'unsized_plugin'" in err
    assert "distribution 'geovr-plugin-unsized'" in err
    assert ("build_meta()" in err) if verb == ["plan"] else ("cache_layout()" in err)
    assert "Traceback" not in err


def test_sizing_error_is_a_usage_level_error():
    assert SizingError("x").exit_code == 2
