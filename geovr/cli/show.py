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

    out = {"name": recipe.name, "description": recipe.description, "seed": recipe.seed,
           "output_dir": recipe.output_dir}
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


def add_parser(sub) -> None:
    p = add_verb(sub, "show", help="print the resolved recipe",
                 description="Print a recipe after extends, overrides and component defaults.",
                 examples="  geovr show recipes/tiny_synthetic.toml\n"
                          "  geovr show recipes/qwen_vggt.toml trainer.max_steps=10 --json\n")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from geovr.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    data = resolved(recipe)
    if args.json:
        print_json(data)
    else:
        print(to_toml(data), end="")
    return 0
