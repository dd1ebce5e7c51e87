"""The four GeoVR objectives: contracts, heads, layer resolution, targets, errors and registration."""

from __future__ import annotations

import types

import attrs
import pytest
import torch

import geovr
from geovr.errors import GeovrError, RecipeError
from geovr.objectives import losses as L
from geovr.objectives.configs import (
    CameraPoseConfig,
    DepthConfig,
    FeatureDistillConfig,
    MetricScaleConfig,
)
from geovr.objectives.objectives import (
    build_camera_pose,
    build_depth,
    build_feature_distill,
    build_metric_scale,
)
from geovr.protocols import Batch, StudentOutput, TeacherOutput
from geovr.recipe.validate import validate
from geovr.testing import registered
from geovr.testing.contracts import check_objective

B, S, h, w, D = 2, 3, 4, 6, 16
T_LAYERS, C = (1, 3, 5, 7), 12


def context(num_layers=4, teacher_layers=T_LAYERS, teacher_depth=8, feature_dim=C, teacher=True):
    t = types.SimpleNamespace(num_layers=teacher_depth, layers=tuple(teacher_layers), feature_dim=feature_dim)
    return types.SimpleNamespace(
        backbone=types.SimpleNamespace(hidden_size=D, num_layers=num_layers),
        teacher=t if teacher else None,
        device="cpu",
    )


def student(layers=range(5), hh=h, ww=w):
    g = torch.Generator().manual_seed(1)
    return StudentOutput(
        hidden={i: torch.randn(B, S, hh, ww, D, generator=g).requires_grad_(True) for i in layers},
        camera=torch.randn(B, S, D, generator=g).requires_grad_(True),
        scale=torch.randn(B, D, generator=g).requires_grad_(True),
    )


def teacher(metric_scale=None):
    g = torch.Generator().manual_seed(2)
    pose = torch.randn(B, S, 9, generator=g)
    pose[..., 7:] = pose[..., 7:].abs()
    return TeacherOutput(
        features={t: torch.randn(B, S, 3, 5, C, generator=g) for t in T_LAYERS},
        depth=torch.rand(B, S, 14, 20, generator=g) + 0.5,
        depth_conf=torch.rand(B, S, 14, 20, generator=g) + 1,
        pose_enc=pose,
        metric_depth=torch.rand(B, S, 28, 40, generator=g) * 3 + 0.1,
        metric_scale=metric_scale,
    )


def batch():
    return Batch(frames=torch.rand(B, S, 3, 28, 40), sample_ids=["a", "b"], questions=["", ""], answers=["", ""])


CASES = {
    "camera_pose": (build_camera_pose, CameraPoseConfig(hidden_dim=32)),
    "camera_pose_sign_inv": (build_camera_pose, CameraPoseConfig(hidden_dim=32, quat_sign_invariant=True)),
    "depth": (build_depth, DepthConfig(width_scale=1 / 32)),
    "depth_silog": (build_depth, DepthConfig(width_scale=1 / 32, loss="silog")),
    "depth_dpt": (build_depth, DepthConfig(width_scale=1 / 32, head="dpt")),
    "depth_conf": (build_depth, DepthConfig(width_scale=1 / 32, head="dpt", loss="conf")),
    "metric_scale": (build_metric_scale, MetricScaleConfig(hidden_dim=16)),
    "metric_scale_no_conf": (build_metric_scale, MetricScaleConfig(hidden_dim=16, use_teacher_conf=False)),
    "feature_distill": (build_feature_distill, FeatureDistillConfig()),
}
EXPECTED_METRICS = {
    "camera_pose": {"loss_T", "loss_R", "loss_FL", "loss", "rot_err_deg"},
    "depth": {"loss", "abs_rel", "delta1"},
    "metric_scale": {"loss", "scale_ratio_err"},
    "feature_distill": {"loss", "cos"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_objective_contract(case):
    factory, config = CASES[case]
    torch.manual_seed(0)
    obj = factory(config, context())
    st, te = student(), teacher()
    out = check_objective(
        obj, st, te, batch(), provides=frozenset({"features", "depth", "depth_conf", "pose_enc", "metric_depth"})
    )
    assert EXPECTED_METRICS[obj.name] <= set(out.metrics)
    assert abs(out.metrics["loss"] - float(out.loss.detach())) < 1e-6
    # the gradient also reaches the student states the objective reads (it trains the backbone)
    used = {"camera_pose": [st.camera], "metric_scale": [st.scale]}.get(
        obj.name, [st.hidden[i] for i in obj.student_needs.layers]
    )
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in used)


def test_default_weights_requires_and_student_needs():
    assert [
        CameraPoseConfig().weight,
        DepthConfig().weight,
        MetricScaleConfig().weight,
        FeatureDistillConfig().weight,
    ] == [2.5, 1.0, 1.0, 1.0]
    assert CameraPoseConfig().requires() == {"pose_enc"}
    assert DepthConfig().requires() == {"depth"}
    assert MetricScaleConfig().requires() == {"depth", "depth_conf", "metric_depth"}
    assert MetricScaleConfig(use_teacher_conf=False).requires() == {"depth", "metric_depth"}
    assert FeatureDistillConfig().requires() == {"features"}
    ctx = context()
    cam = build_camera_pose(CameraPoseConfig(hidden_dim=8), ctx)
    assert cam.weight == 2.5 and cam.student_needs.camera_tokens and not cam.student_needs.layers
    scale = build_metric_scale(MetricScaleConfig(hidden_dim=8), ctx)
    assert scale.student_needs.scale_token and not scale.student_needs.camera_tokens


def test_reference_head_architectures():
    ctx = context()
    cam = build_camera_pose(CameraPoseConfig(), ctx).head
    assert [type(m).__name__ for m in cam.trunk] == ["LayerNorm", "Linear", "GELU", "Linear", "GELU"]
    assert cam.trunk[1].weight.shape == (1536, D) and cam.trunk[3].weight.shape == (1536, 1536)
    assert (cam.fc_T.out_features, cam.fc_R.out_features, cam.fc_FL.out_features) == (3, 4, 2)
    scale = build_metric_scale(MetricScaleConfig(), ctx).head
    assert scale.mlp[1].weight.shape == (512, D) and scale.mlp[3].weight.shape == (1, 512)
    dense = build_depth(DepthConfig(), ctx).head
    assert type(dense).__name__ == "DenseHead" and dense.target_patch_size == 28 and dense.patch_size == 32
    assert [p.out_channels for p in dense.projects] == [256, 512, 1024, 1024]
    assert [type(r).__name__ for r in dense.resize_layers] == [
        "ConvTranspose2d",
        "ConvTranspose2d",
        "Identity",
        "Conv2d",
    ]
    assert dense.proj.out_channels == 49 and dense.scratch.layer1_rn.out_channels == 256
    dpt = build_depth(DepthConfig(head="dpt"), ctx).head
    assert [p.out_channels for p in dpt.projects] == [256, 512, 1024, 1024]
    assert [type(r).__name__ for r in dpt.resize] == ["ConvTranspose2d", "ConvTranspose2d", "Identity", "Conv2d"]
    assert [r.stride for r in (dpt.resize[0], dpt.resize[1], dpt.resize[3])] == [(4, 4), (2, 2), (2, 2)]
    assert all(r.out_channels == 256 for r in dpt.layer_rn)
    small = build_depth(DepthConfig(width_scale=0.125, head="dpt"), ctx).head
    assert [p.out_channels for p in small.projects] == [32, 64, 128, 128] and small.layer_rn[0].out_channels == 32
    small = build_depth(DepthConfig(width_scale=0.125), ctx).head
    assert [p.out_channels for p in small.projects] == [32, 64, 128, 128] and small.scratch.layer1_rn.out_channels == 32
    with pytest.raises(RecipeError, match='needs head = "dpt"'):
        build_depth(DepthConfig(loss="conf"), ctx)
    assert 'needs head = "dpt"' in " ".join(DepthConfig(loss="conf").check())
    assert "multiple of 4" in " ".join(DepthConfig(target_patch_size=14).check())
    dist = build_feature_distill(FeatureDistillConfig(), ctx)
    assert len(dist.heads) == 4 and dist.heads[0].mlp[1].weight.shape == (C, D)
    assert dist.heads[0].mlp[3].weight.shape == (C, C)


def test_heads_outputs_shapes_and_ranges():
    ctx = context()
    st = student(hh=5, ww=7)  # odd grid: the ×0.5 level rounds up and fusion still lines up
    te = teacher()
    depth = build_depth(DepthConfig(width_scale=1 / 32, head="dpt", loss="conf"), ctx)
    d, c = depth.predict(st, (14, 20))
    assert d.shape == (B, S, 14, 20) and c.shape == (B, S, 14, 20)
    assert bool((d > 0).all()) and bool((c > 1).all())
    dense = build_depth(DepthConfig(width_scale=1 / 32), ctx)
    d, c = dense.predict(st, (56, 84))  # multiples of 28: decoded directly
    assert d.shape == (B, S, 56, 84) and c is None and bool((d > 0).all())
    d, _ = dense.predict(st, (14, 20))  # not a multiple: decoded at 28x28 and resized
    assert d.shape == (B, S, 14, 20) and bool((d > 0).all())
    cam = build_camera_pose(CameraPoseConfig(hidden_dim=8), ctx)
    pose = cam.head(st.camera)
    assert pose.shape == (B, S, 9) and bool((pose[..., 7:] >= 0).all())
    dist = build_feature_distill(FeatureDistillConfig(hidden_dim=6), ctx)
    assert dist.heads[0](st.hidden[1], (3, 5)).shape == (B, S, 3, 5, C)
    assert build_metric_scale(MetricScaleConfig(hidden_dim=8), ctx).head(st.scale).shape == (B,)
    assert build_depth(DepthConfig(width_scale=1 / 32), ctx)(st, te, batch()).loss.ndim == 0


def test_bfloat16_student_states_are_accepted():
    ctx = context()
    st = student()
    st = StudentOutput(
        hidden={k: v.detach().bfloat16() for k, v in st.hidden.items()},
        camera=st.camera.detach().bfloat16(),
        scale=st.scale.detach().bfloat16(),
    )
    for name in ("camera_pose", "depth", "metric_scale", "feature_distill"):
        factory, config = CASES[name]
        out = factory(config, ctx)(st, teacher(), batch())
        assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_losses_stay_float32_under_bf16_autocast():
    ctx, st, te = context(), student(), teacher()
    for name in ("camera_pose", "depth", "depth_conf", "metric_scale", "feature_distill"):
        factory, config = CASES[name]
        obj = factory(config, ctx)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = obj(st, te, batch())
        assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss), name
        out.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in obj.parameters() if p.grad is not None), name


def test_layers_mapped_from_the_teacher():
    ctx = context(num_layers=28, teacher_layers=(4, 11, 17, 23), teacher_depth=24)
    assert build_depth(DepthConfig(width_scale=1 / 64), ctx).student_needs.layers == (6, 14, 21, 28)
    dist = build_feature_distill(FeatureDistillConfig(hidden_dim=4), ctx)
    assert dist.pairs == [(4, 6), (11, 14), (17, 21), (23, 28)]
    dist = build_feature_distill(FeatureDistillConfig(teacher_layers=[23], hidden_dim=4), ctx)
    assert dist.pairs == [(23, 28)] and dist.student_needs.layers == (28,)
    config = FeatureDistillConfig(teacher_layers=[11, 23], student_layers=[3, 4], hidden_dim=4)
    dist = build_feature_distill(config, ctx)
    assert dist.pairs == [(11, 3), (23, 4)]


def test_layer_resolution_errors_and_fallbacks():
    assert build_depth(DepthConfig(width_scale=1 / 64), context(teacher=False)).layers == [1, 2, 3, 4]
    assert build_depth(DepthConfig(width_scale=1 / 64, student_layers=[0, 1, 1, 4]), context()).layers == [0, 1, 1, 4]
    with pytest.raises(RecipeError, match=r"outside 0..4"):
        build_depth(DepthConfig(width_scale=1 / 64, student_layers=[1, 2, 3, 9]), context())
    with pytest.raises(RecipeError, match="needs 4 layers"):
        build_depth(DepthConfig(width_scale=1 / 64), context(teacher_layers=(1, 7)))
    with pytest.raises(RecipeError, match="teacher_layers"):
        build_depth(DepthConfig(width_scale=1 / 64, teacher_layers=[1, 2, 3, 99]), context())
    with pytest.raises(RecipeError, match="set teacher_layers"):
        build_feature_distill(FeatureDistillConfig(student_layers=[1]), context(teacher_layers=()))
    with pytest.raises(RecipeError, match="feature_dim"):
        build_feature_distill(FeatureDistillConfig(), context(teacher=False))
    assert "exactly 4 levels" in " ".join(DepthConfig(student_layers=[1, 2]).check())
    assert "same length" in " ".join(FeatureDistillConfig(teacher_layers=[1], student_layers=[1, 2]).check())


def test_metric_scale_targets():
    ctx = context()
    st, te = student(), teacher()
    fit = build_metric_scale(MetricScaleConfig(hidden_dim=8), ctx)
    expected = L.scale_target(
        te.depth, torch.nn.functional.interpolate(te.metric_depth, size=(14, 20), mode="nearest"), te.depth_conf
    )
    torch.testing.assert_close(fit.target(te), expected)
    out = fit(st, te, batch())
    torch.testing.assert_close(out.loss, L.scale_loss(fit.head(st.scale), expected))
    exact = torch.tensor([2.0, 0.5])
    te_exact = attrs.evolve(te, metric_scale=exact)
    torch.testing.assert_close(fit.target(te_exact), exact)  # "auto": the teacher's exact scale wins
    forced = build_metric_scale(MetricScaleConfig(hidden_dim=8, target="fit"), ctx)
    torch.testing.assert_close(forced.target(te_exact), expected)
    # a video without valid pixels is left out of the loss
    te_bad = attrs.evolve(te, metric_depth=te.metric_depth.clone())
    te_bad.metric_depth[1] = 0.0
    out = fit(st, te_bad, batch())
    assert out.metrics["valid_fraction"] == 0.5
    torch.testing.assert_close(out.loss, L.scale_loss(fit.head(st.scale)[:1], expected[:1]))


def test_metric_scale_focal_rescale_and_sky():
    """The released target: metric depth × f/300 (f = mean of the teacher's fx, fy), sky left out."""
    ctx = context()
    depth = torch.ones(1, 2, 4, 6)
    metric = torch.full((1, 2, 4, 6), 3.0)
    metric[0, 0, 0, :] = float("nan")  # the metric teacher's sky
    K = torch.eye(3).repeat(1, 2, 1, 1)
    K[..., 0, 0], K[..., 1, 1] = 600.0, 400.0  # f = 500 px
    te = TeacherOutput(depth=depth, metric_depth=metric, intrinsics=K)
    config = MetricScaleConfig(hidden_dim=8, use_teacher_conf=False, focal_rescale=True)
    assert config.requires() == {"depth", "metric_depth", "intrinsics"}
    close = torch.testing.assert_close
    close(build_metric_scale(config, ctx).target(te), torch.tensor([3.0 * 500 / 300]))
    wide = attrs.evolve(config, metric_input_width=12)  # the metric model saw frames twice as wide
    close(build_metric_scale(wide, ctx).target(te), torch.tensor([3.0 * 1000 / 300]))
    plain = attrs.evolve(config, focal_rescale=False)
    close(build_metric_scale(plain, ctx).target(te), torch.tensor([3.0]))
    metric[0, 1, 3, :] = 80.0  # far pixels: sky by the depth threshold
    close(build_metric_scale(plain, ctx).target(te), torch.tensor([(3 * 36 + 80 * 6) / 42]))
    close(build_metric_scale(attrs.evolve(plain, sky_max_depth=20.0), ctx).target(te), torch.tensor([3.0]))
    with pytest.raises(GeovrError, match="intrinsics"):
        build_metric_scale(config, ctx).target(attrs.evolve(te, intrinsics=None))
    assert "focal_reference must be > 0" in " ".join(MetricScaleConfig(focal_reference=0).check())


def test_missing_inputs_raise_clear_errors():
    ctx = context()
    st, te = student(), teacher()
    with pytest.raises(GeovrError, match="camera tokens"):
        build_camera_pose(CameraPoseConfig(hidden_dim=8), ctx)(attrs.evolve(st, camera=None), te, batch())
    with pytest.raises(GeovrError, match="pose_enc"):
        build_camera_pose(CameraPoseConfig(hidden_dim=8), ctx)(st, attrs.evolve(te, pose_enc=None), batch())
    with pytest.raises(GeovrError, match="hidden grid of layer 2"):
        build_depth(DepthConfig(width_scale=1 / 64), ctx)(attrs.evolve(st, hidden={1: st.hidden[1]}), te, batch())
    with pytest.raises(GeovrError, match="metric depth"):
        build_metric_scale(MetricScaleConfig(hidden_dim=8), ctx)(st, attrs.evolve(te, metric_depth=None), batch())
    with pytest.raises(GeovrError, match="features of layer 1"):
        build_feature_distill(FeatureDistillConfig(), ctx)(st, attrs.evolve(te, features={}), batch())


# -- registration and recipes -----------------------------------------------------------------------


def test_plugin_module_registers_everything():
    reg = geovr.get_registry()
    for name, cfg in [
        ("camera_pose", CameraPoseConfig),
        ("depth", DepthConfig),
        ("metric_scale", MetricScaleConfig),
        ("feature_distill", FeatureDistillConfig),
    ]:
        spec = reg.get("objective", name)
        assert spec.config is cfg and spec.distribution == "geovr" and spec.summary
        assert callable(spec.load_factory())


@attrs.define
class ToyBackboneConfig:
    num_layers: int = 28


@attrs.define
class ToyTeacherConfig:
    outputs: list[str] = attrs.field(factory=lambda: ["features", "depth", "depth_conf", "pose_enc"])

    def provides(self):
        return frozenset(self.outputs)


class ToyPlugin:
    @geovr.hookimpl
    def register_backbones(self, register):
        register(
            "toy_backbone_obj",
            lambda c, ctx: types.SimpleNamespace(hidden_size=D, num_layers=c.num_layers),
            config=ToyBackboneConfig,
        )

    @geovr.hookimpl
    def register_teachers(self, register):
        register(
            "toy_teacher_obj",
            lambda c, ctx: types.SimpleNamespace(num_layers=24, layers=(4, 11, 17, 23), feature_dim=C),
            config=ToyTeacherConfig,
        )


OBJECTIVE_TABLES = {
    "camera_pose": {"component": "camera_pose", "hidden_dim": 8},
    "depth": {"component": "depth", "width_scale": 0.03125},
    "metric_scale": {"component": "metric_scale", "hidden_dim": 8},
    "feature_distill": {"component": "feature_distill", "hidden_dim": 8},
}


def _raw(names, outputs=None, metric_teacher=None):
    raw = {
        "name": "t",
        "backbone": {"component": "toy_backbone_obj"},
        "teacher": {"component": "toy_teacher_obj", **({"outputs": outputs} if outputs is not None else {})},
        "objectives": [dict(OBJECTIVE_TABLES[n]) for n in names],
    }
    if metric_teacher:
        raw["metric_teacher"] = {"component": "hf_depth", "model": "/nonexistent/dir"}
    return raw


def test_every_subset_of_the_objectives_validates_and_builds():
    import itertools

    with registered(ToyPlugin(), "toy-objective-recipes", isolated=True) as host:
        names = sorted(OBJECTIVE_TABLES)
        for r in range(1, 5):
            for subset in itertools.combinations(names, r):
                metric = "metric_scale" in subset
                recipe = validate(_raw(subset, metric_teacher=metric), registry=host.registry)
                assert [c.component for c in recipe.objectives] == list(subset)
        recipe = validate(_raw(["camera_pose", "depth", "feature_distill"]), registry=host.registry)
        ctx = geovr.build(recipe, stages=("backbone", "teacher", "objectives"))
        cam, depth, dist = ctx.objectives
        assert (cam.weight, depth.weight, dist.weight) == (2.5, 1.0, 1.0)
        assert depth.student_needs.layers == (6, 14, 21, 28) == dist.student_needs.layers


def test_recipe_cross_checks_name_the_missing_outputs():
    with registered(ToyPlugin(), "toy-objective-recipes", isolated=True) as host:
        with pytest.raises(RecipeError) as err:
            validate(_raw(["camera_pose", "metric_scale"], outputs=["depth"]), registry=host.registry)
        text = str(err.value)
        assert "objectives.0: objective 'camera_pose' requires pose_enc" in text
        assert "objectives.1: objective 'metric_scale' requires depth_conf, metric_depth" in text
        assert "[metric_teacher]" in text
        with pytest.raises(RecipeError, match="exactly 4 levels"):
            raw = _raw(["depth"])
            raw["objectives"][0]["student_layers"] = [1, 2]
            validate(raw, registry=host.registry)
