"""``geovr eval``: run evaluators on a recipe's backbone, a training run, or a plain checkpoint.

Torch-free at import; everything heavy is imported when the verb runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from geovr.errors import UsageError

if TYPE_CHECKING:
    from geovr.protocols import BuildContext, Evaluator

EXAMPLES = """\
  geovr eval recipes/tiny_synthetic.toml                      every [[evaluators]] of the recipe
  geovr eval recipes/qwen_vggt.toml evaluators.0.protocol=geovr evaluators.0.num_frames=128 backbone.max_frames=128
  geovr eval recipes/qwen_vggt.toml --only vsibench --output runs/eval_base
  geovr eval runs/qwen_vggt                                   a training run: its recipe + last checkpoint
  geovr eval runs/qwen_vggt --data data/vsibench protocol=geovr
  geovr eval --model exported/ --evaluator vsibench --data data/vsibench
  geovr eval --model exported/ --evaluator vsibench --data data/vsibench protocol=geovr limit=200
  geovr eval --model exported/ --evaluator vsibench --evaluator synthetic_qa --data data/vsibench evaluators.0.limit=50
  geovr eval --model exported/ --data data/vsibench num_frames=128 --backbone-option max_frames=128
  geovr eval --model exported/ --evaluator synthetic_qa --json
  geovr eval --model GeoVR-VGGT-Qwen3-VL-2B --evaluator vsibench --data data/vsibench protocol=geovr num_frames=128 --backbone-option max_frames=128
"""


def add_parser(sub) -> None:
    """Register the ``eval`` verb on ``geovr``'s sub-parsers."""
    p = sub.add_parser(
        "eval",
        help="evaluate a backbone (VSI-Bench, synthetic QA, geometry probes)",
        description="Build a backbone and run evaluators. Give a RECIPE (its [backbone] and [[evaluators]]), a "
        "training run directory (its recipe and last checkpoint), or --model DIR (a plain "
        "transformers checkpoint such as a `geovr export` output) with --evaluator. Trailing "
        "key=value pairs override recipe keys, or with --model set evaluator options (key=value for "
        "every named evaluator, evaluators.N.key=value for the N-th). Reports go "
        "to OUTPUT/<evaluator>-<protocol>/ (predictions.jsonl, results.json/.md/.png); OUTPUT "
        "defaults to <output_dir>/eval for a recipe, RUN_DIR/eval/<checkpoint> for a run and "
        "runs/eval-<name> for --model.",
        epilog=f"examples:\n{EXAMPLES}\nExit codes: 0 ok, 1 runtime failure, 2 usage or recipe error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", nargs="?", metavar="RECIPE|RUN_DIR", help="recipe TOML or training run directory")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument(
        "--model",
        metavar="DIR",
        help="transformers checkpoint directory (model + processor): a plain one "
        "or a released GeoVR model (its extra modules are ignored)",
    )
    p.add_argument(
        "--backbone", metavar="NAME", help="backbone component for --model (default: from config.json's model_type)"
    )
    p.add_argument(
        "--backbone-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backbone option for --model (repeatable), e.g. max_frames=128 or dtype=bfloat16",
    )
    p.add_argument(
        "--evaluator",
        action="append",
        metavar="NAME",
        help="evaluator to run with --model or on a run instead of its recipe's (repeatable; default "
        "vsibench when --data is given, else synthetic_qa); key=value pairs then set its options",
    )
    p.add_argument("--data", metavar="DIR", help="VSI-Bench directory for --evaluator vsibench")
    p.add_argument("--only", action="append", metavar="NAME", help="with a recipe: run only these evaluators")
    p.add_argument(
        "--output",
        metavar="DIR",
        help="evaluation directory (default: <recipe output_dir>/eval, "
        "RUN_DIR/eval/<checkpoint>, or runs/eval-<model dir name>)",
    )
    p.add_argument("--device", default=None, help="device (default: cuda if available, else cpu)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=run)


def _device(arg: str | None) -> str:
    if arg:
        return arg
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _parse_options(pairs: list[str]) -> dict:
    from geovr.recipe.load import parse_value

    out = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"option {item!r}: expected key=value (e.g. protocol=geovr)")
        out[key.strip()] = parse_value(raw.strip())
    return out


def backbone_for_checkpoint(model_dir: str, name: str | None = None) -> str:
    """The registered backbone able to load ``model_dir`` (from its ``config.json`` ``model_type``)."""
    from geovr.plugins import get_registry

    d = Path(model_dir)
    cfg = d / "config.json"
    if not cfg.is_file():
        raise UsageError(f"{d}: not a transformers checkpoint directory (no config.json)")
    if name:
        return name
    try:
        model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type", "")
    except json.JSONDecodeError as exc:
        raise UsageError(f"{cfg}: invalid JSON ({exc})") from exc
    registry = get_registry()
    if ("backbone", model_type) in registry:
        return model_type
    raise UsageError(
        f"{cfg}: no registered backbone for model_type {model_type!r}; pass --backbone NAME "
        f"(registered: {', '.join(registry.names('backbone')) or 'none'})"
    )


def _model_mode(args) -> tuple[object, list[tuple[str, Evaluator]], str]:
    from geovr.plugins import get_registry
    from geovr.protocols import BuildContext

    registry = get_registry()
    device = _device(args.device)
    bb_name = backbone_for_checkpoint(args.model, args.backbone)
    output = args.output or str(Path("runs") / f"eval-{Path(args.model).resolve().name}")
    ctx = BuildContext(device=device, output_dir=output)
    evaluators = _named_evaluators(args, ctx)
    print(f"geovr: loading {bb_name} from {args.model} on {device}", file=sys.stderr)
    bb_options = {**_parse_options(args.backbone_option), "pretrained": str(args.model)}
    from geovr.train.released import is_released, quiet_unused_weights, unused_summary

    if is_released(args.model):  # a released GeoVR directory: heads, tokens and teachers are not loaded
        print(f"geovr: {unused_summary(args.model)}", file=sys.stderr)
        with quiet_unused_weights():
            ctx.backbone = registry.get("backbone", bb_name).build(bb_options, ctx)
    else:
        ctx.backbone = registry.get("backbone", bb_name).build(bb_options, ctx)
    return ctx.backbone, evaluators, output


def _key_values_after_model(args) -> None:
    """With ``--model``, argparse gives the first trailing ``key=value`` to the RECIPE slot: move it back."""
    if args.model and args.recipe and "=" in args.recipe and not Path(args.recipe).exists():
        args.overrides.insert(0, args.recipe)
        args.recipe = None


def named_configs(args) -> list[tuple[str, object]]:
    """The evaluators named by ``--evaluator`` (default ``vsibench`` with ``--data``, else ``synthetic_qa``)
    with their parsed options. A trailing ``key=value`` sets the option of every named evaluator;
    ``evaluators.N.key=value`` (the recipe grammar) sets it for the N-th only. ``--data`` sets vsibench's
    ``data_dir``. Unknown names and options raise with the key."""
    from geovr.plugins import get_registry

    _key_values_after_model(args)
    registry = get_registry()
    names = args.evaluator or (["vsibench"] if args.data else ["synthetic_qa"])
    shared: dict[str, object] = {}
    own: list[dict[str, object]] = [{} for _ in names]
    for key, value in _parse_options(args.overrides).items():
        head, _, rest = key.partition(".")
        if head != "evaluators":
            shared[key] = value
            continue
        index, _, option = rest.partition(".")
        if not index.isdigit() or not option or "." in option:
            raise UsageError(
                f"option {key!r}: expected evaluators.N.OPTION=value (N = position among the "
                f"evaluators: {', '.join(f'{i}={n}' for i, n in enumerate(names))})"
            )
        if int(index) >= len(names):
            raise UsageError(
                f"option {key!r}: there are {len(names)} evaluators ({', '.join(names)}); indices start at 0"
            )
        own[int(index)][option] = value
    out = []
    for name, options in zip(names, own, strict=True):
        spec = registry.get("evaluator", name)
        table = {**shared, **options}
        if args.data and name == "vsibench":
            table.setdefault("data_dir", args.data)
        out.append((name, spec.parse_config(table)))
    return out


def _named_evaluators(args, ctx: BuildContext) -> list[tuple[str, Evaluator]]:
    """:func:`named_configs`, built."""
    from geovr.plugins import get_registry

    registry = get_registry()
    return [(name, registry.get("evaluator", name).build(config, ctx)) for name, config in named_configs(args)]


def _select(recipe, recipe_path, only) -> None:
    choices = recipe.evaluators
    if only:
        choices = [c for c in choices if c.component in set(only)]
    if not choices:
        have = ", ".join(c.component for c in recipe.evaluators) or "none"
        raise UsageError(
            f"{recipe_path}: no evaluators to run (recipe [[evaluators]]: {have}"
            f"{'; --only ' + ', '.join(only) if only else ''})"
        )
    recipe.evaluators = choices


def _recipe_mode(args, recipe_path: str, overrides: list[str]) -> tuple[object, list[tuple[str, Evaluator]], str]:
    from geovr.recipe import build, load_recipe

    recipe = load_recipe(recipe_path, overrides)
    _select(recipe, recipe_path, args.only)
    device = _device(args.device)
    print(f"geovr: building {recipe.name} on {device}", file=sys.stderr)
    ctx = build(
        recipe,
        device=device,
        stages=("backbone", "evaluators"),
        progress=lambda label: print(f"geovr:   {label}", file=sys.stderr),
    )
    evaluators = list(zip([c.component for c in recipe.evaluators], ctx.evaluators, strict=False))
    return ctx.backbone, evaluators, args.output or str(Path(recipe.output_dir) / "eval")


def _run_dir_mode(args, run_dir: Path):
    """A training run: the student rebuilt from ``RUN_DIR/recipe.toml`` with its newest checkpoint. The
    evaluators are the recipe's (``key=value`` overrides apply to them, not to the trained backbone), or
    with ``--evaluator``/``--data`` those named, configured by the ``key=value`` options."""
    from geovr.protocols import BuildContext
    from geovr.recipe import build, load_recipe
    from geovr.train.export import load_student

    recipe_path = run_dir / "recipe.toml"
    named = bool(args.evaluator or args.data)
    recipe = load_recipe(recipe_path, [] if named else list(args.overrides))
    if not named:
        _select(recipe, recipe_path, args.only)
    device = _device(args.device)
    backbone, _, ckpt = load_student(run_dir, device=device)
    print(f"geovr: loaded the student of {run_dir} from {ckpt}", file=sys.stderr)
    output = args.output or str(run_dir / "eval" / Path(ckpt).name)
    ctx = BuildContext(recipe=recipe, device=device, output_dir=output, seed=recipe.seed, backbone=backbone)
    if named:
        return backbone, _named_evaluators(args, ctx), output
    ctx = build(recipe, device=device, stages=("evaluators",), context=ctx)
    return backbone, list(zip([c.component for c in recipe.evaluators], ctx.evaluators, strict=False)), output


def run(args) -> int:
    """Run the verb; returns the exit code (errors surface as :class:`geovr.errors.GeovrError`)."""
    _key_values_after_model(args)
    if args.model:
        if args.recipe:
            raise UsageError("give either RECIPE/RUN_DIR or --model DIR, not both")
        backbone, evaluators, output = _model_mode(args)
    elif args.recipe is None:
        raise UsageError("missing RECIPE, RUN_DIR or --model DIR (see geovr eval --help)")
    elif Path(args.recipe).is_dir():
        d = Path(args.recipe)
        if (d / "config.json").is_file():  # an exported plain checkpoint
            args.model, args.recipe = str(d), None
            backbone, evaluators, output = _model_mode(args)
        elif (d / "recipe.toml").is_file():
            backbone, evaluators, output = _run_dir_mode(args, d)
        else:
            raise UsageError(
                f"{d}: neither a transformers checkpoint (config.json) nor a geovr run directory (recipe.toml)"
            )
    else:
        backbone, evaluators, output = _recipe_mode(args, args.recipe, list(args.overrides))

    results: dict[str, dict[str, float]] = {}
    for name, evaluator in evaluators:
        print(f"geovr: evaluating {name} -> {output}", file=sys.stderr)
        results[name] = evaluator.evaluate(backbone, output)
    if args.json:
        json.dump(results, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        for name, scores in results.items():
            print(f"{name}:")
            for key, value in scores.items():
                v = "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"
                print(f"  {key:<28} {v}")
    return 0
