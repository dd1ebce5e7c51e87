"""``geovr recipes``: list and copy the recipes shipped with geovr."""

from __future__ import annotations

import shutil
from pathlib import Path

from geovr.cli._util import add_verb, print_json, print_table
from geovr.errors import UsageError


def add_parser(sub) -> None:
    p = add_verb(
        sub,
        "recipes",
        help="list or copy shipped recipes",
        description="Shipped recipes are starting points: copy one, edit it, run it.",
        examples="  geovr recipes list\n  geovr recipes list --json\n  geovr recipes copy tiny_synthetic my_run.toml\n",
    )
    rs = p.add_subparsers(dest="recipes_command", metavar="ACTION", required=True)
    lp = rs.add_parser("list", help="list shipped recipes")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=run_list)
    cp = rs.add_parser("copy", help="copy a shipped recipe to DEST")
    cp.add_argument("name")
    cp.add_argument("dest")
    cp.add_argument("--force", action="store_true", help="overwrite DEST")
    cp.set_defaults(func=run_copy)


def _description(path: Path) -> str:
    import tomllib

    try:
        return str(tomllib.loads(path.read_text()).get("description", ""))
    except Exception:  # a broken shipped recipe is reported by validate, not here
        return "(unreadable)"


def run_list(args) -> int:
    from geovr.recipe.load import shipped_recipes

    items = [{"name": n, "path": str(p), "description": _description(p)} for n, p in shipped_recipes().items()]
    if args.json:
        print_json(items)
    else:
        print_table(["name", "description"], [[i["name"], i["description"]] for i in items])
    return 0


def run_copy(args) -> int:
    from geovr.recipe.load import shipped_recipes

    recipes = shipped_recipes()
    name = Path(args.name).stem
    if name not in recipes:
        raise UsageError(f"no shipped recipe {args.name!r}; available: {', '.join(recipes) or '(none)'}")
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / f"{name}.toml"
    if dest.exists() and not args.force:
        raise UsageError(f"{dest} exists; pass --force to overwrite")
    shutil.copyfile(recipes[name], dest)
    print(f"copied {name} to {dest}")
    return 0
