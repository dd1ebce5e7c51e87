"""``geovr run``: validate a recipe, build its components and train."""

from __future__ import annotations

import sys

from geovr.cli._util import add_verb


def add_parser(sub) -> None:
    p = add_verb(
        sub,
        "run",
        help="train with a recipe",
        description="Validate the recipe (all problems at once), build its components and run its "
        "trainer. The run directory receives checkpoints, metrics.jsonl and the resolved "
        "recipe.",
        examples="  geovr run recipes/tiny_synthetic.toml\n"
        '  geovr run recipes/tiny_synthetic.toml trainer.max_steps=5 output_dir="runs/quick"\n'
        "  geovr run recipes/qwen_vggt.toml --dry-run\n"
        "  geovr run recipes/tiny_synthetic.toml --resume runs/tiny_synthetic\n"
        "  geovr run recipes/tiny_synthetic.toml trainer.max_steps=120 --resume runs/tiny_synthetic "
        "--resume-force\n"
        "  geovr run recipes/qwen_vggt.toml --accelerate-config fsdp.yaml\n",
    )
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan; build nothing")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument(
        "--resume-force",
        action="store_true",
        help="with --resume: continue even if max_steps, lr, batch size, accumulation, data or seed "
        "changed (the differences are printed)",
    )
    p.add_argument("--accelerate-config", metavar="FILE", help="accelerate config (DDP, FSDP, DeepSpeed)")
    p.add_argument("--device", default=None, help="override the device (default: cuda if available, else cpu)")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="let checkpoint loaders fully unpickle files that weights-only loading rejects (runs "
        "code from the file: only for checkpoints you trust; same as GEOVR_ALLOW_PICKLE=1; a "
        "recipe cannot enable this)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from geovr.recipe import load_recipe

    if args.allow_pickle:  # through the environment, so launched processes inherit it
        from geovr.unpickling import allow_pickle

        allow_pickle()
    if args.accelerate_config and not args.dry_run:
        from geovr.train.launch import launched, relaunch

        if not launched():  # re-run this command under `accelerate launch` with the config file
            return relaunch(args.accelerate_config, ["run", *_forwarded_args(args)])
    overrides = list(args.overrides)
    if args.resume:
        overrides += [f'output_dir="{args.resume}"', "trainer.resume=true"]
    if args.resume_force:
        if not args.resume:
            from geovr.errors import UsageError

            raise UsageError("--resume-force goes with --resume RUN_DIR")
        overrides.append("trainer.resume_force=true")
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
    from geovr.train.runner import train

    train(recipe, device=device, progress=lambda label: print(f"geovr:   {label}", file=sys.stderr))
    print(f"geovr: done: {recipe.output_dir}", file=sys.stderr)
    for line in loss_summary(recipe.output_dir):
        print(f"geovr:   {line}", file=sys.stderr)
    return 0


def loss_summary(run_dir: str, window: int = 5) -> list[str]:
    """``name: first → last`` for the total, LM and each objective loss, each averaged over the first
    and last ``window`` logged steps of ``RUN_DIR/metrics.jsonl`` (empty when there is none)."""
    import json
    import os

    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    keys = [k for k in ("loss", "lm_loss") if k in rows[-1]] + sorted(k for k in rows[-1] if k.endswith("/loss"))
    out = []
    for k in keys:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
        if len(vals) >= 2:
            n = min(window, len(vals) // 2)
            first, last = sum(vals[:n]) / n, sum(vals[-n:]) / n
            out.append(f"{k.removesuffix('/loss'):<16} {first:9.4f} -> {last:9.4f}")
    return out


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _forwarded_args(args) -> list[str]:
    """The ``geovr run`` arguments to repeat in each launched process."""
    out = [args.recipe, *args.overrides, "--accelerate-config", args.accelerate_config]
    if args.resume:
        out += ["--resume", args.resume]
    if args.resume_force:
        out.append("--resume-force")
    if args.device:
        out += ["--device", args.device]
    return out
