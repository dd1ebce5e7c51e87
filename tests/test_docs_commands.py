"""Every ``geovr ...`` command line in README.md, CONTRIBUTING.md and docs/*.md parses with the real CLI.

Lines come from fenced shell code blocks (no language, bash, sh, shell, console; a line that starts
with ``geovr ``, after an optional ``$ `` prompt
and ``VAR=value`` environment prefix; ``&&``/``;``/``|`` split a shell line) and from inline code spans
that start with ``geovr ``. Each is parsed, never run, by the parser ``geovr`` builds (core and plugin
verbs, :func:`geovr.cli.main.parse_args`), and its ``key=value`` overrides are checked against what the
verb applies them to: the recipe (``load_recipe``) for ``run``/``validate``/``show``/``eval RECIPE``, the
named evaluators' options for ``eval --model``. Synopses are reduced to a command: ``A|B`` takes ``A``,
optional ``[--opt ARG]`` groups are kept (so their options are checked), ``[key=value ...]`` and ``...``
are dropped; a recipe that is a placeholder (``RECIPE``, ``my.toml``) becomes the tiny shipped recipe,
other upper-case placeholders (``RUN_DIR``, ``DIR``) stay plain strings. A span naming only a verb
(``geovr run``, ``geovr data synth``) must name an existing verb.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO / "recipes" / "tiny_synthetic.toml"
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")
NUMBER_FOR = {"N": "2", "K": "2", "J": "2", "LEVEL": "0.95"}  # placeholders of options that take a number
SHELL_OPERATORS = {"&&", "||", ";", "|"}
SHELL_FENCES = {"", "bash", "sh", "shell", "console", "zsh"}  # other fences (python, toml, text) hold no commands


def doc_files() -> list[Path]:
    """README.md, CONTRIBUTING.md and every Markdown file under docs/ (new ones are covered automatically)."""
    return [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").rglob("*.md"))]


def _tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _commands_in(tokens: list[str]) -> list[list[str]]:
    """The ``geovr`` commands of a shell line (split at ``&&``, ``;``, ``|``; ``VAR=x`` prefixes dropped)."""
    out, current = [], []
    for tok in [*tokens, ";"]:
        if tok in SHELL_OPERATORS:
            while current and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", current[0]):
                current.pop(0)
            if current and current[0] == "geovr" and not (len(current) > 1 and current[1].endswith(":")):
                out.append(current[1:])  # "geovr train: 50%" is output, not a command
            current = []
        else:
            current.append(tok)
    return out


def _synopsis_to_command(text: str) -> str:
    """Reduce a usage synopsis to one command line (see the module docstring)."""
    text = text.replace("\\|", "|")
    text = re.sub(r"(?<![\s|])\|(?=\S)\S*", "", text)  # RECIPE|RUN_DIR -> RECIPE (not a shell pipe)
    text = re.sub(r"(?<=\s)\[key=value[^\]]*\]", "", text)
    while True:  # innermost optional option groups first: [--resume RUN_DIR [--resume-force]]
        new = re.sub(r"(?<=\s)\[(-[^\[\]]*)\]", r"\1", text)
        if new == text:
            break
        text = new
    return re.sub(r"(?<=\s)\.\.\.(?=\s|$)", "", text)


def doc_commands() -> list[tuple[str, list[str]]]:
    """``(where, argv)`` for every geovr command line of the docs; ``where`` is ``file:line``."""
    return _doc_commands_of(doc_files(), REPO)


def _doc_commands_of(paths: list[Path], root: Path) -> list[tuple[str, list[str]]]:
    found = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        prose: list[tuple[int, str]] = []
        fence = None
        pending, start = "", 0
        for no, line in enumerate(lines, 1):
            stripped = line.strip()
            marker = re.match(r"(```|~~~)\s*([\w+-]*)", stripped)
            if marker and (fence is None or stripped.startswith(fence)):
                if fence is None:
                    fence, shell = marker.group(1), marker.group(2).lower() in SHELL_FENCES
                else:
                    fence = None
                continue
            if fence is None:
                prose.append((no, line))
                continue
            if not shell:
                continue
            if not pending:
                start = no
            if stripped.endswith("\\"):  # shell continuation
                pending += stripped[:-1] + " "
                continue
            text, pending = pending + stripped, ""
            text = re.sub(r"^\$\s+", "", text)
            try:
                tokens = _tokens(_synopsis_to_command(text))
            except ValueError:
                continue  # not shell (e.g. Python inside a fence); a geovr line there is caught below
            for argv in _commands_in(tokens):
                found.append((f"{rel}:{start}", argv))
        # inline code spans may wrap lines; a span is kept when it starts with "geovr "
        joined = "\n".join(line for _, line in prose)
        numbers = [no for no, _ in prose]
        for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", joined):
            span = " ".join(m.group(1).split())
            if not span.startswith("geovr "):
                continue
            no = numbers[joined.count("\n", 0, m.start())]
            for argv in _commands_in(_tokens(_synopsis_to_command(span))):
                found.append((f"{rel}:{no}", argv))
    return found


# -- checking one command ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parser():
    from geovr.cli.main import build_parser
    from geovr.plugins import load_plugins

    return build_parser(load_plugins())


def _subcommands(parser) -> dict:
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _names_a_verb(parser, argv: list[str]) -> bool:
    """``argv`` is only a path of verb names (``run``, ``data synth``) that exists."""
    node = parser
    for word in argv:
        choices = _subcommands(node)
        if word not in choices:
            return False
        node = choices[word]
    return bool(argv)


def _names_a_verb_option(parser, argv: list[str]) -> bool:
    """``argv`` is a verb path followed only by switches (options without a value) of that verb: prose such as
    ``geovr run --dry-run``. An option that takes a value must be shown with one."""
    words = [w for w in argv if not w.startswith("-")]
    flags = argv[len(words) :]
    if not flags or argv[: len(words)] != words or not _names_a_verb(parser, words):
        return False
    node = parser
    for word in words:
        node = _subcommands(node)[word]
    known = {s for action in node._actions if action.nargs == 0 for s in action.option_strings}
    return all(f.split("=")[0] in known for f in flags)


def _recipe_path(value: str | None) -> Path:
    if value and value.endswith(".toml") and (REPO / value).is_file():
        return REPO / value
    if value and value.startswith("recipes/"):
        return REPO / value  # names a shipped recipe: it must exist
    return DEFAULT_RECIPE  # RECIPE, my.toml, a run directory (its recipe.toml): the tiny shipped recipe


def check_command(parser, argv: list[str]) -> str | None:
    """The problem with one documented command, or ``None`` when it parses and its overrides apply."""
    from geovr.cli.main import parse_args
    from geovr.errors import GeovrError
    from geovr.recipe import load_recipe

    if _names_a_verb(parser, argv) or _names_a_verb_option(parser, argv):
        return None
    # a count placeholder after an option (``--entries N``, ``--gpus N``) stands for a number
    argv = [NUMBER_FOR.get(w, w) if i and argv[i - 1].startswith("--") else w for i, w in enumerate(argv)]
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            args = parse_args(parser, argv)
    except SystemExit as exc:
        return None if exc.code in (0, None) else f"does not parse: {err.getvalue().strip()}"
    overrides = list(getattr(args, "overrides", None) or [])
    try:
        if args.command == "eval":
            from geovr.eval.cli import _key_values_after_model, named_configs

            _key_values_after_model(args)
            if args.model or args.evaluator or args.data:
                if any(PLACEHOLDER.match(n) for n in args.evaluator or []):
                    return f"evaluator placeholder with options {overrides}" if overrides else None
                named_configs(args)
            else:
                recipe = load_recipe(_recipe_path(args.recipe), overrides)
                have = {c.component for c in recipe.evaluators}
                missing = set(args.only or []) - have
                if missing:
                    return f"--only {sorted(missing)}: the recipe's evaluators are {sorted(have)}"
        elif hasattr(args, "recipe") and hasattr(args, "overrides"):
            load_recipe(_recipe_path(args.recipe), overrides)
    except GeovrError as exc:
        return f"overrides {overrides} rejected: {exc}"
    return None


COMMANDS = doc_commands()


@pytest.mark.parametrize("where,argv", COMMANDS, ids=[f"{w} geovr {' '.join(a)}"[:120] for w, a in COMMANDS])
def test_documented_command_parses(parser, where, argv):
    problem = check_command(parser, argv)
    assert problem is None, f"{where}: geovr {shlex.join(argv)}\n{problem}"


def test_extraction_finds_the_documented_commands():
    found = {(w.split(":")[0], " ".join(a)) for w, a in COMMANDS}
    assert ("README.md", "run recipes/tiny_synthetic.toml") in found  # after `pip install ... &&`
    assert (
        "README.md",
        "eval --model DIR --evaluator vsibench --data data/vsibench evaluators.0.protocol=geovr",
    ) in found
    assert ("docs/writing-plugins.md", "list-components --kind objective") in found  # after VAR=1
    assert any(
        w.startswith("docs/cli.md") and a[:2] == ["run", "recipes/tiny_synthetic.toml"] or a[:1] == ["run"]
        for w, a in COMMANDS
    )
    assert len(COMMANDS) > 40
    assert all(a[:1] != ["hello"] for _, a in COMMANDS)  # a Python string inside a fence is not a command


def test_synopsis_reduction():
    assert _synopsis_to_command("geovr eval RECIPE\\|RUN_DIR [key=value ...]").split() == ["geovr", "eval", "RECIPE"]
    assert _synopsis_to_command("geovr run RECIPE [--resume RUN_DIR [--resume-force]] [--allow-pickle]").split() == [
        "geovr",
        "run",
        "RECIPE",
        "--resume",
        "RUN_DIR",
        "--resume-force",
        "--allow-pickle",
    ]
    assert _synopsis_to_command("geovr validate r.toml teacher.layers=[4,11]").split()[-1] == "teacher.layers=[4,11]"
    assert _commands_in(_tokens("pip install x && geovr run a.toml  # train")) == [["run", "a.toml"]]
    assert _commands_in(_tokens("geovr train: 50% 1/2")) == []  # progress output


def test_fences_and_spans(tmp_path):
    doc = tmp_path / "docs" / "new.md"
    doc.parent.mkdir()
    doc.write_text(
        "Use `geovr run\nRECIPE` here.\n\n```python\ngeovr hello\n```\n\n```console\n"
        "$ geovr validate RECIPE \\\n    trainer.max_steps=2\ngeovr: ok\n```\n",
        encoding="utf-8",
    )
    found = sorted(_doc_commands_of([doc], tmp_path))
    assert found == [
        ("docs/new.md:1", ["run", "RECIPE"]),  # an inline span across a line break
        ("docs/new.md:9", ["validate", "RECIPE", "trainer.max_steps=2"]),
    ]  # not python, not output


@pytest.mark.parametrize(
    "line",
    [
        "frobnicate recipes/tiny_synthetic.toml",  # no such verb
        "run",  # verb alone is fine; this one is not:
        "run recipes/tiny_synthetic.toml --no-such-flag",
        "run --no-such-flag",  # a verb and a flag that does not exist
        "run RECIPE trainer.max_step=2",  # unknown recipe key
        "validate recipes/qwen_vggt.toml objectives.9.weight=1",  # no such array item
        "eval --model DIR --evaluator vsibench evaluators.0.protocl=geovr",
        "eval --model DIR --evaluator vsibench evaluators.1.protocol=geovr",
        "eval recipes/tiny_synthetic.toml --only vsibench",
    ],
)
def test_broken_lines_are_found(parser, line):
    argv = line.split()
    if argv == ["run"]:
        assert check_command(parser, argv) is None  # a span naming the verb
        assert check_command(parser, ["run", "--dry-run"]) is None  # prose naming a flag of the verb
        assert check_command(parser, ["run", "--dry-run", "--resume"]) is not None  # --resume needs RUN_DIR
        assert check_command(parser, ["run", "recipes/no_such.toml"]) is not None  # not a placeholder
        return
    assert check_command(parser, argv) is not None, line


def test_documented_eval_overrides_reach_the_evaluator(parser):
    from geovr.cli.main import parse_args
    from geovr.eval.cli import named_configs

    args = parse_args(
        parser,
        [
            "eval",
            "--model",
            "DIR",
            "--evaluator",
            "vsibench",
            "--evaluator",
            "synthetic_qa",
            "--data",
            "d",
            "evaluators.0.protocol=geovr",
            "limit=3",
            "evaluators.1.limit=5",
        ],
    )
    (n0, c0), (n1, c1) = named_configs(args)
    assert (n0, c0.protocol, c0.limit, c0.data_dir) == ("vsibench", "geovr", 3, "d")
    assert (n1, c1.protocol, c1.limit) == ("synthetic_qa", "lmms-eval", 5)


def _help_examples(parser, prefix: str = "geovr") -> list[tuple[str, list[str]]]:
    """The ``geovr ...`` example lines of every verb's ``--help`` epilog (a description follows 2+ spaces)."""
    found = []
    for line in (parser.epilog or "").splitlines():
        text = re.split(r"\s{2,}", line.strip())[0]
        if text.startswith("geovr "):
            found += [(f"{prefix} --help", argv) for argv in _commands_in(_tokens(text))]
    for name, sub in _subcommands(parser).items():
        found += _help_examples(sub, f"{prefix} {name}")
    return found


def test_help_examples_parse(parser):
    examples = _help_examples(parser)
    assert len({where for where, _ in examples}) >= 8  # the top level and most verbs have examples
    problems = [
        f"{where}: geovr {shlex.join(argv)}\n  {problem}"
        for where, argv in examples
        if (problem := check_command(parser, argv))
    ]
    assert not problems, "\n".join(problems)
