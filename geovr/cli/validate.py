"""``geovr validate``: check a recipe (structure and options, then this machine's files and checkpoints)."""

from __future__ import annotations

from geovr.cli._util import add_verb


def add_parser(sub) -> None:
    p = add_verb(
        sub,
        "validate",
        help="validate a recipe (all problems at once)",
        description="Validate a recipe: TOML syntax, structure, overrides, component names, options "
        "and cross-checks, then the same preflight `geovr run` does before building "
        "anything (data files, checkpoint paths, Hugging Face ids in the local cache; no "
        "network access). 'ok' means `geovr run` will start. Prints every problem; exit "
        "code 2 if any.",
        examples="  geovr validate recipes/tiny_synthetic.toml\n"
        '  geovr validate recipes/qwen_vggt.toml objectives.1.weight=0.5 teacher.dtype="bfloat16"\n'
        "  geovr validate recipes/qwen_vggt.toml --no-preflight   # structure only (any machine)\n",
    )
    p.add_argument("recipe", help="recipe TOML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides (TOML literal values)")
    p.add_argument(
        "--no-preflight",
        dest="preflight",
        action="store_false",
        help="check the recipe's structure and options only, not this machine's files and checkpoints",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from geovr.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides, preflight=args.preflight)
    n = len(recipe.components())
    scope = "" if args.preflight else "; structure only, files and checkpoints not checked"
    print(f"{args.recipe}: ok ({recipe.name}: {n} component{'s' if n != 1 else ''}{scope})")
    return 0
