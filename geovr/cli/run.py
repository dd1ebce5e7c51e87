"""``geovr run``: validate a recipe, build its components and train."""

from __future__ import annotations

import sys

from geovr.cli._util import add_verb


def add_parser(sub) -> None:
    p = add_verb(sub, "run", help="train with a recipe",
                 description="Validate the recipe (all problems at once), build its components and run its "
                             "trainer. The run directory receives checkpoints, metrics.jsonl and the resolved "
                             "recipe.",
                 examples="  geovr run recipes/tiny_synthetic.toml\n"
                          "  geovr run recipes/tiny_synthetic.toml trainer.max_steps=5 output_dir=\"runs/quick\"\n"
                          "  geovr run recipes/qwen_vggt.toml --dry-run\n"
                          "  geovr run recipes/tiny_synthetic.toml --resume runs/tiny_synthetic\n"
                          "  geovr run recipes/qwen_vggt.toml --accelerate-config fsdp.yaml\n")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan; build nothing")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--accelerate-config", metavar="FILE", help="accelerate config (DDP, FSDP, DeepSpeed)")
    p.add_argument("--device", default=None, help="override the device (default: cuda if available, else cpu)")
    p.set_defaults(func=run)


def run(args) -> int:
    from geovr.recipe import build, load_recipe

    overrides = list(args.overrides)
    if args.resume:
        overrides += [f'output_dir="{args.resume}"', "trainer.resume=true"]
    if args.accelerate_config:
        overrides.append(f'trainer.accelerate_config="{args.accelerate_config}"')
    recipe = load_recipe(args.recipe, overrides, require_training=True)
    if args.dry_run:
        from geovr.cli.show import resolved, to_toml

        print(f"# dry run: {recipe.name} -> {recipe.output_dir}")
        print(to_toml(resolved(recipe)), end="")
        return 0
    device = args.device or _default_device()
    print(f"geovr: building {recipe.name} on {device}", file=sys.stderr)
    ctx = build(recipe, device=device, progress=lambda label: print(f"geovr:   {label}", file=sys.stderr))
    result = ctx.extra["trainer"].fit(ctx)
    if isinstance(result, dict) and result:
        summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(result.items()))
        print(f"geovr: done: {summary}", file=sys.stderr)
    return 0


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
