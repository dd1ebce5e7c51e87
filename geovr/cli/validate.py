"""``geovr validate``: check a recipe without importing anything heavy."""

from __future__ import annotations

from geovr.cli._util import add_verb


def add_parser(sub) -> None:
    p = add_verb(sub, "validate", help="validate a recipe (all problems at once)",
                 description="Validate a recipe: TOML syntax, structure, overrides, component names, options "
                             "and cross-checks. Prints every problem; exit code 2 if any.",
                 examples="  geovr validate recipes/tiny_synthetic.toml\n"
                          "  geovr validate recipes/qwen_vggt.toml objectives.1.weight=0.5 teacher.dtype=\"bfloat16\"\n")
    p.add_argument("recipe", help="recipe TOML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides (TOML literal values)")
    p.set_defaults(func=run)


def run(args) -> int:
    from geovr.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    n = len(recipe.components())
    print(f"{args.recipe}: ok ({recipe.name}: {n} component{'s' if n != 1 else ''})")
    return 0
