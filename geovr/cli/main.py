"""``geovr`` command line: one module per verb; plugins add verbs through ``register_commands``.

Exit codes: 0 success, 1 runtime failure, 2 usage or recipe error.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from geovr import __version__
from geovr.errors import GeovrError

VERBS = ("run", "validate", "show", "recipes", "list_plugins", "list_components", "ask", "ablate", "compare")

EPILOG = """\
examples:
  geovr run recipes/tiny_synthetic.toml               train the tiny CPU recipe
  geovr run recipes/qwen_vggt.toml trainer.max_steps=100 --dry-run
  geovr validate recipes/qwen_vggt.toml teacher.layers=[4,11,17,23]
  geovr list-plugins --all --json
  geovr list-components --kind teacher
  geovr recipes copy tiny_synthetic my_recipe.toml
  geovr ask runs/tiny_synthetic room.mp4 "How many chairs are in the room?"

Every verb has --help with its own examples. Exit codes: 0 ok, 1 runtime failure, 2 usage/recipe error.
"""


def _format_warning(message, category, filename, lineno, line=None):
    return f"geovr: warning: {message}\n"


def build_parser(host=None) -> argparse.ArgumentParser:
    """The full parser: core verbs plus every plugin's ``register_commands`` verbs."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="geovr",
        description="Teach video MLLMs 3D geometry from frozen 3D foundation models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"geovr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb in VERBS:
        importlib.import_module(f"geovr.cli.{verb}").add_parser(sub)
    if host is not None:
        host.add_commands(sub)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` as ``geovr`` does: ``key=value`` overrides may also follow the options (argparse
    stops collecting a positional list at the first option). Usage errors exit through argparse."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        if isinstance(getattr(args, "overrides", None), list) and all(
            "=" in e and not e.startswith("-") for e in extra
        ):
            args.overrides.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``geovr`` console script."""
    warnings.formatwarning = _format_warning
    argv = sys.argv[1:] if argv is None else argv
    try:
        from geovr.plugins import load_plugins

        host = load_plugins()
        parser = build_parser(host)
        try:
            args = parse_args(parser, argv)
        except SystemExit as exc:  # argparse usage errors and --help/--version
            return int(exc.code or 0)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2 if not argv else 0
        return int(args.func(args) or 0)
    except GeovrError as exc:
        print(f"geovr: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("geovr: interrupted", file=sys.stderr)
        return 130
    finally:
        _end_distributed()


def _end_distributed() -> None:
    """Destroy a process group a multi-process verb (run, eval, cache) created: exiting with a live
    gloo/NCCL group can abort the interpreter at shutdown. Imports nothing when torch was never loaded."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
