"""Small helpers shared by CLI verbs: help formatting, JSON output, tables."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def add_verb(subparsers, name: str, *, help: str, description: str, examples: str) -> argparse.ArgumentParser:
    """Add a sub-command whose ``--help`` ends with real examples."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain left-aligned table (rows printed in the order given)."""
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
