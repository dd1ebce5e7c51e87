"""The command line: help with examples, JSON listings, exit codes, recipes list/copy, show."""

from __future__ import annotations

import json

import pytest

from geovr import __version__
from geovr.cli.main import build_parser, main
from geovr.plugins import load_plugins
from geovr.testing.distributions import run_cli


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"geovr {__version__}"


def test_every_verb_has_help_with_examples(capsys):
    parser = build_parser(load_plugins())
    verbs = parser._subparsers._group_actions[0].choices
    assert {"run", "validate", "show", "recipes", "list-plugins", "list-components"} <= set(verbs)
    for name, sub in verbs.items():
        text = sub.format_help()
        assert "examples:" in text and f"geovr {name}" in text, f"geovr {name} --help lacks examples"


def test_no_command_prints_help_and_usage_error(capsys):
    assert main([]) == 2
    assert "examples:" in capsys.readouterr().out


def test_list_components_json_is_sorted_and_complete(capsys):
    assert main(["list-components", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    keys = [(r["kind"], r["name"]) for r in records]
    from geovr.registry import KINDS

    assert keys == sorted(keys, key=lambda k: (KINDS.index(k[0]), k[1]))
    assert all({"kind", "name", "distribution", "plugin", "options", "summary"} <= set(r) for r in records)
    assert main(["list-components", "--kind", "teachers", "--json"]) == 0
    assert all(r["kind"] == "teacher" for r in json.loads(capsys.readouterr().out))
    assert main(["list-components", "--kind", "bogus"]) == 2
    assert "unknown kind 'bogus'" in capsys.readouterr().err


def test_recipes_list_and_copy(tmp_path, capsys):
    from geovr.recipe.load import shipped_recipes

    assert main(["recipes", "list", "--json"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert names == sorted(shipped_recipes())
    if not names:
        pytest.skip("no shipped recipes yet")
    dest = tmp_path / "mine.toml"
    assert main(["recipes", "copy", names[0], str(dest)]) == 0
    assert dest.read_text() == shipped_recipes()[names[0]].read_text()
    assert main(["recipes", "copy", names[0], str(dest)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["recipes", "copy", "no_such_recipe", str(tmp_path)]) == 2
