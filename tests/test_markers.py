"""Test tiers match the markers (CONTRIBUTING.md "Test tiers"): a test that trains through the CLI's
``run`` end to end is marked ``slow``.

Found statically in every test module (``tests/``, ``plugins/*/tests/``): a call ``...main(["run", ...])``
without ``--dry-run`` whose exit code is expected to be 0 (``== 0`` or the bare call), or a command list
with ``"geovr", "run"`` (a subprocess) without ``--dry-run``; directly in the test or in a helper function
of the same module the test calls. Runs that stop at validation (exit code 2) are not end to end.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS = {"run", "Popen", "call", "check_call", "check_output"}


def _test_files() -> list[Path]:
    return sorted([*(REPO / "tests").rglob("test_*.py"), *(REPO / "plugins").glob("*/tests/**/test_*.py")])


def _strings(node: ast.List) -> list[str | None]:
    return [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None for e in node.elts]


def _is_run_list(node: ast.AST) -> bool:
    """A literal argv that trains: ``["run", ...]`` (CLI) or ``[..., "geovr", "run", ...]`` (subprocess)."""
    if not isinstance(node, ast.List):
        return False
    items = _strings(node)
    if "--dry-run" in items:
        return False
    return items[:1] == ["run"] or any(a == "geovr" and b == "run" for a, b in zip(items, items[1:], strict=False))


def _name(func: ast.AST) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _runs_end_to_end(fn: ast.AST) -> bool:
    """``fn`` calls the CLI's run expecting success, or builds a subprocess ``geovr run`` command."""
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Call)
            and _name(node.left.func).endswith("main")
            and node.left.args
            and _is_run_list(node.left.args[0])
        ):
            if all(isinstance(c, ast.Constant) and c.value == 0 for c in node.comparators):
                return True
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and _name(node.value.func).endswith("main")
            and node.value.args
            and _is_run_list(node.value.args[0])
        ):
            return True
    commands = {
        t.id
        for n in ast.walk(fn)
        if isinstance(n, ast.Assign) and _is_run_list(n.value)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    for node in ast.walk(fn):  # a process started with a `geovr run` command (literal or a name bound to one)
        if isinstance(node, ast.Call) and _name(node.func) in SUBPROCESS and node.args:
            arg = node.args[0]
            if _is_run_list(arg) or (isinstance(arg, ast.Name) and arg.id in commands):
                return True
    return False


def _marked_slow(decorators: list[ast.expr]) -> bool:
    return any("slow" in ast.unparse(d) and "mark" in ast.unparse(d) for d in decorators)


def unmarked_end_to_end(path: Path) -> list[str]:
    """``file::test`` of every test in ``path`` that runs end to end without the ``slow`` marker."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module_slow = any(
        isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
        and "slow" in ast.unparse(n.value)
        for n in tree.body
    )
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    helpers = {name for name, fn in functions.items() if not name.startswith("test_") and _runs_end_to_end(fn)}
    found = []
    for name, fn in functions.items():
        if not name.startswith("test_") or module_slow or _marked_slow(fn.decorator_list):
            continue
        calls = {_name(n.func) for n in ast.walk(fn) if isinstance(n, ast.Call)}
        if _runs_end_to_end(fn) or calls & helpers:
            found.append(f"{path.relative_to(REPO).as_posix()}::{name}")
    return found


def test_end_to_end_runs_are_marked_slow():
    found = [t for path in _test_files() for t in unmarked_end_to_end(path)]
    assert not found, "end-to-end tests (they train through `geovr run`) without @pytest.mark.slow:\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    "source,flagged",
    [
        ('def test_a():\n    assert main(["run", "r.toml"]) == 0\n', True),
        ('def test_a():\n    main(["run", "r.toml", "trainer.max_steps=2"])\n', True),
        ('def test_a():\n    assert main(["run", "r.toml", "--dry-run"]) == 0\n', False),
        ('def test_a():\n    assert main(["run", "r.toml", "trainer.lr=nan"]) == 2\n', False),
        ('def test_a():\n    subprocess.run([sys.executable, "-m", "geovr", "run", "r.toml"])\n', True),
        ('def test_a():\n    cmd = ["geovr", "run", "r.toml"]\n    p = subprocess.Popen(cmd)\n', True),
        ('def test_a():\n    assert launch_command("c", ["run", "r.toml"]) == ["geovr", "run", "r.toml"]\n', False),
        ('def _train(p):\n    assert geovr_main(["run", p]) == 0\n\ndef test_a():\n    _train("x")\n', True),
        ('import pytest\n\n@pytest.mark.slow\ndef test_a():\n    assert main(["run", "r.toml"]) == 0\n', False),
        (
            'import pytest\npytestmark = pytest.mark.slow\n\ndef test_a():\n    assert main(["run", "r.toml"]) == 0\n',
            False,
        ),
    ],
)
def test_the_audit_finds_unmarked_runs(tmp_path, source, flagged):
    path = REPO / "tests" / f"_audit_probe_{tmp_path.name}.py"
    try:
        path.write_text(source, encoding="utf-8")
        assert bool(unmarked_end_to_end(path)) == flagged
    finally:
        path.unlink(missing_ok=True)
