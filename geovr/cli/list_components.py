"""``geovr list-components``: every registered component by kind."""

from __future__ import annotations

from typing import Any

from geovr.cli._util import add_verb, print_json, print_table
from geovr.errors import UsageError
from geovr.registry import KINDS


def add_parser(sub) -> None:
    p = add_verb(
        sub,
        "list-components",
        help="list registered components",
        description="List the components recipes can name, with the plugin that provides each.",
        examples="  geovr list-components\n  geovr list-components --kind teacher\n"
        "  geovr list-components --kind objective --json\n",
    )
    p.add_argument("--kind", help=f"one of: {', '.join(KINDS)}")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from geovr.plugins import get_registry

    kind = args.kind
    if kind is not None:
        kind = kind.rstrip("s") if kind.rstrip("s") in KINDS else kind
        if kind not in KINDS:
            raise UsageError(f"unknown kind {args.kind!r}; expected one of {', '.join(KINDS)}")
    specs = get_registry().specs(kind)
    records: list[dict[str, Any]] = [
        {
            "kind": s.kind,
            "name": s.name,
            "aliases": sorted(s.aliases),
            "plugin": s.plugin,
            "distribution": s.distribution,
            "summary": s.summary or "",
            "options": sorted(a.name for a in __import__("attrs").fields(s.config)) if s.config else [],
        }
        for s in specs
    ]
    if args.json:
        print_json(records)
        return 0
    print_table(
        ["kind", "name", "distribution", "summary"],
        [[r["kind"], r["name"], r["distribution"], r["summary"]] for r in records],
    )
    return 0
