"""The template plugin is discovered by entry point, validates in recipes and passes the contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import geovr
from geovr.protocols import Batch, BuildContext, StudentOutput, TeacherOutput
from geovr.testing.contracts import check_objective


def test_discovered_through_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "geovr", "list-plugins", "--json"], capture_output=True, text=True, check=True
    )
    infos = {i["name"]: i for i in json.loads(out.stdout)}
    assert "template" in infos, out.stdout
    assert infos["template"]["distribution"] == "geovr-plugin-template"
    assert infos["template"]["hooks"] == ["register_objectives"]
    assert infos["template"]["components"] == {"objective": ["frame_depth_mean"]}


def test_recipe_validation_uses_config(tmp_path):
    registry = geovr.load_plugins(reload=True).registry
    spec = registry.get("objective", "frame_depth_mean")
    with pytest.raises(geovr.RecipeError) as err:
        spec.parse_config({"hidden": 0, "wieght": 1.0})
    text = str(err.value)
    assert "did you mean 'weight'" in text


class _Backbone:
    hidden_size = 16


def test_contract_and_learning():
    torch.manual_seed(0)
    objective = (
        geovr.get_registry()
        .get("objective", "frame_depth_mean")
        .build({"hidden": 8}, BuildContext(backbone=_Backbone()))
    )
    B, S, D = 2, 3, 16
    camera = torch.randn(B, S, D, requires_grad=True)
    depth = torch.rand(B, S, 8, 8) * 3 + 0.5
    batch = Batch(frames=torch.rand(B, S, 3, 8, 8), sample_ids=["a", "b"], questions=["", ""], answers=["", ""])
    out = check_objective(
        objective, StudentOutput(camera=camera), TeacherOutput(depth=depth), batch, provides=frozenset({"depth"})
    )
    assert out.metrics["l1"] > 0
    opt = torch.optim.Adam(objective.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = objective(StudentOutput(camera=camera.detach()), TeacherOutput(depth=depth), batch).loss
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
