"""``geovr show``: the fully resolved recipe (extends + overrides + defaults)."""

from __future__ import annotations

import attrs

from geovr.cli._util import add_verb, print_json


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


def _toml_value(v) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if v is None:
        return '"<unset>"'
    return json.dumps(str(v))


def to_toml(data: dict) -> str:
    """Render :func:`resolved` output as TOML (``None`` values are omitted)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, (dict, list)) or
             (isinstance(v, list) and not all(isinstance(x, dict) for x in v))]

    def table(header, body, array=False):
        lines.append("")
        lines.append(f"[[{header}]]" if array else f"[{header}]")
        for k, v in body.items():
            if v is not None:
                lines.append(f"{k} = {_toml_value(v)}")

    for k, v in data.items():
        if isinstance(v, dict) and k != "data":
            table(k, v)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                table(k, item, array=True)
    for split, v in data.get("data", {}).items():
        table(f"data.{split}", v)
    return "\n".join(lines) + "\n"


def run(args) -> int:
    from geovr.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    data = resolved(recipe)
    if args.json:
        print_json(data)
    else:
        print(to_toml(data), end="")
    return 0
