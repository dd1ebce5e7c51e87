"""``geovr list-plugins``: installed plugins, their hooks and components."""

from __future__ import annotations

from geovr.cli._util import add_verb, print_json, print_table


def add_parser(sub) -> None:
    p = add_verb(
        sub,
        "list-plugins",
        help="list installed plugins",
        description="List plugins discovered through the 'geovr' entry-point group.",
        examples="  geovr list-plugins\n  geovr list-plugins --all --json\n"
        "  GEOVR_LOAD_PLUGINS=vggt geovr list-plugins   # allowlist\n",
    )
    p.add_argument("--all", action="store_true", help="include geovr's built-in plugins")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from geovr.plugins import load_plugins

    infos = load_plugins().plugin_infos(include_builtins=args.all)
    if args.json:
        print_json(infos)
        return 0
    if not infos:
        print("no plugins installed (use --all to include built-ins)")
        return 0
    rows = []
    for i in infos:
        comps = "; ".join(f"{k}: {', '.join(v)}" for k, v in i["components"].items()) or "-"
        rows.append([i["name"], i["distribution"], i["version"], "yes" if i["builtin"] else "no", comps])
    print_table(["plugin", "distribution", "version", "builtin", "components"], rows)
    return 0
