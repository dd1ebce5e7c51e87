"""Shared fixtures of the core test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from geovr.testing.distributions import make_distribution

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def good_plugin(tmp_path) -> Path:
    """A valid external plugin distribution (teacher + objective) on a temporary path."""
    return make_distribution(
        tmp_path / "site",
        "geovr-plugin-fake",
        "fake_geovr_plugin",
        """
        import attrs
        from geovr import hookimpl

        @attrs.define
        class FakeTeacherConfig:
            layers: list[int] = [1, 2]
            def provides(self):
                return frozenset({"depth", "features"})

        @hookimpl
        def register_teachers(register):
            register("fake_teacher", "fake_geovr_plugin:build", config=FakeTeacherConfig, summary="test")

        @hookimpl
        def register_backbones(register):
            register("fake_backbone", "fake_geovr_plugin:build")

        @hookimpl
        def register_objectives(register):
            register("fake_objective", "fake_geovr_plugin:build", aliases=("fake_obj",))
        """,
    )
