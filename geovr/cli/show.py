"""``geovr show``: the fully resolved recipe (extends + overrides + defaults)."""

from __future__ import annotations

import attrs

from geovr.cli._util import add_verb, print_json
from geovr.recipe.dump import to_toml


def resolved(recipe) -> dict:
    """The recipe as plain data, each component with every option (defaults filled in)."""

    def comp(c):
        cfg = attrs.asdict(c.config) if attrs.has(type(c.config)) else dict(c.config or {})
        return {"component": c.component, "distribution": c.spec.distribution, **cfg}

    out = {"name": recipe.name, "description": recipe.description, "seed": recipe.seed, "output_dir": recipe.output_dir}
    for key in ("backbone", "teacher", "metric_teacher", "trainer"):
        c = getattr(recipe, key)
        if c is not None:
            out[key] = comp(c)
    for key in ("objectives", "evaluators", "callbacks"):
        items = getattr(recipe, key)
        if items:
            out[key] = [comp(c) for c in items]
    if recipe.data:
        out["data"] = {k: comp(v) for k, v in recipe.data.items()}
    return out


def value_origins(recipe, data: dict) -> dict[str, str]:
    """``{dotted.key: origin}`` for every value of ``data`` (:func:`resolved`): the recipe file or the
    override that set it, ``default`` for component defaults, ``registry`` for ``distribution``."""
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            key = f"{prefix}{k}"
            if isinstance(v, dict) or (isinstance(v, list) and v and all(isinstance(x, dict) for x in v)):
                walk(v, f"{key}.")
            elif k == "distribution" and prefix:
                out[key] = "registry"
            else:
                out[key] = recipe.origins.get(key, "default")

    walk(data, "")
    return out


def add_parser(sub) -> None:
    p = add_verb(
        sub,
        "show",
        help="print the resolved recipe",
        description="Print a recipe after extends, overrides and component defaults. --origin adds "
        "where each value comes from: the recipe file (in an extends chain, the file "
        "that set it), the override, or 'default'.",
        examples="  geovr show recipes/tiny_synthetic.toml\n"
        "  geovr show recipes/qwen_vggt.toml trainer.max_steps=10 --json\n"
        "  geovr show recipes/qwen25_vggt.toml trainer.lr=1e-5 --origin\n",
    )
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument(
        "--json",
        action="store_true",
        help='print JSON (with --origin: {"recipe": ..., "origins": {dotted.key: origin}})',
    )
    p.add_argument("--origin", action="store_true", help="say which file or override set each value")
    p.set_defaults(func=run)


def run(args) -> int:
    from geovr.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    data = resolved(recipe)
    notes = value_origins(recipe, data) if args.origin else None
    if args.json:
        print_json({"recipe": data, "origins": notes} if args.origin else data)
    else:
        print(to_toml(data, notes=notes), end="")
    return 0
