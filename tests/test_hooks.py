"""Every hook is documented in docs/plugin-hooks.md and has a test (``test_hook_<name>`` below)."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import attrs
import pytest

import geovr
from geovr import hookspecs
from geovr.protocols import BuildContext
from geovr.registry import HOOK_KINDS
from geovr.testing import registered

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin-hooks.md"
HOOKS = sorted(n for n, f in vars(hookspecs).items() if n.startswith("register_") and callable(f))


def test_hookspecs_are_the_public_set():
    assert HOOKS == sorted([*HOOK_KINDS, "register_commands"])
    for name in HOOKS:
        assert inspect.getdoc(getattr(hookspecs, name)), f"{name} has no docstring"


def test_plugin_hooks_are_documented():
    headings = dict(re.findall(r"^## (register_\w+)\((.*)\)$", DOC.read_text(), flags=re.M))
    assert sorted(headings) == HOOKS
    for name, args in headings.items():
        params = list(inspect.signature(getattr(hookspecs, name)).parameters)
        assert [a.strip() for a in args.split(",")] == params, f"{name}: doc says ({args}), code has {params}"


def test_plugin_hooks_have_tests():
    mine = {n for n in vars(sys.modules[__name__]) if n.startswith("test_hook_")}
    missing = [h for h in HOOKS if f"test_hook_{h}" not in mine]
    assert not missing, f"hooks without a test: {missing}"


@attrs.define
class _Cfg:
    size: int = 2


def _roundtrip(hook: str, kind: str):
    class P:
        pass

    def impl(register):
        register(
            "probe", lambda cfg, ctx: ("built", cfg.size, ctx.seed), config=_Cfg, aliases=("probe2",), summary="a probe"
        )

    impl.__name__ = hook
    setattr(P, hook, staticmethod(geovr.hookimpl(impl)))
    with registered(P(), "probe-plugin", distribution="probe-dist", isolated=True) as host:
        spec = host.registry.get(kind, "probe2")
        assert (spec.kind, spec.name, spec.distribution, spec.summary) == (kind, "probe", "probe-dist", "a probe")
        assert spec.build({"size": 5}, BuildContext(seed=9)) == ("built", 5, 9)
        info = [i for i in host.plugin_infos() if i["name"] == "probe-plugin"][0]
        assert info["hooks"] == [hook] and info["components"] == {kind: ["probe"]}
        with pytest.raises(geovr.RecipeError, match="unknown option 'sise'"):
            spec.parse_config({"sise": 1})


def test_hook_register_backbones():
    _roundtrip("register_backbones", "backbone")


def test_hook_register_teachers():
    _roundtrip("register_teachers", "teacher")


def test_hook_register_objectives():
    _roundtrip("register_objectives", "objective")


def test_hook_register_datasets():
    _roundtrip("register_datasets", "dataset")


def test_hook_register_trainers():
    _roundtrip("register_trainers", "trainer")


def test_hook_register_evaluators():
    _roundtrip("register_evaluators", "evaluator")


def test_hook_register_callbacks():
    _roundtrip("register_callbacks", "callback")


def test_hook_register_commands(capsys):
    class P:
        @geovr.hookimpl
        def register_commands(self, subparsers):
            p = subparsers.add_parser("probe-verb", help="probe")
            p.add_argument("--n", type=int, default=1)
            p.set_defaults(func=lambda args: print("probe" * args.n) or 0)

    from geovr.cli.main import main

    with registered(P(), "verb-plugin", isolated=True):
        assert main(["probe-verb", "--n", "2"]) == 0
    assert capsys.readouterr().out.strip() == "probeprobe"
