"""Built-in plugin of geovr.train: the ``accelerate`` trainer and the ``cache`` / ``export`` / ``import`` verbs.

Torch-free at import: the trainer factory is a lazy string and the verbs import their work on use.
"""

from __future__ import annotations

import sys

from geovr.cli._util import add_verb
from geovr.hookspecs import hookimpl
from geovr.train.configs import AccelerateTrainerConfig


@hookimpl
def register_trainers(register):
    register(
        "accelerate",
        "geovr.train.trainer:build",
        config=AccelerateTrainerConfig,
        summary="HF accelerate trainer: LM + weighted geometric losses, AdamW groups, cosine LR, "
        "checkpoints/resume, teacher cache (DDP/FSDP/DeepSpeed via accelerate config)",
    )


@hookimpl
def register_commands(subparsers):
    p = add_verb(
        subparsers,
        "cache",
        help="precompute teacher outputs for a recipe's training data",
        description="Run the recipe's teacher (and metric teacher) over data.train and store the outputs "
        "as safetensors in the teacher cache (trainer.cache_dir, $GEOVR_CACHE_DIR or "
        "~/.cache/geovr/teacher), keyed by the teacher's cache key, sample id, frame indices, "
        "resolution and layers. Existing entries are reused; stale ones are recomputed. Train "
        'from the cache with trainer.cache="auto" (or "only" to forbid running the '
        "teacher).",
        examples="  geovr cache recipes/tiny_synthetic.toml\n"
        '  geovr cache recipes/qwen_vggt.toml trainer.cache_dir="/data/geovr-cache"\n'
        "  geovr cache recipes/qwen_vggt.toml --estimate --entries 5000 --json\n"
        "  torchrun --nnodes 4 --nproc-per-node 8 -m geovr cache recipes/qwen_vggt.toml "
        "--device cuda\n"
        "  accelerate launch -m geovr cache recipes/qwen_vggt.toml --device cuda\n"
        "Under torchrun / accelerate launch each process (RANK of WORLD_SIZE, over all nodes) "
        "fills its own\nshare of the distinct entries; entries already present are skipped, so a "
        "fill can be restarted.\n"
        "--device cuda puts each process on cuda:LOCAL_RANK.\n",
    )
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--device", default="cpu", help="device the teachers run on (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print entries, bytes per entry by output, total bytes and teacher time; no teacher is run",
    )
    p.add_argument(
        "--entries",
        type=int,
        default=None,
        help="with --estimate: number of distinct entries when the training data is not on this machine",
    )
    p.add_argument(
        "--tflops",
        type=float,
        default=100.0,
        help="with --estimate: sustained teacher throughput per GPU in TFLOP/s (default 100)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_cache)

    p = add_verb(
        subparsers,
        "plan",
        help="memory and size plan of a recipe before renting GPUs (no weights loaded)",
        description="Build the recipe's student, heads and teachers on the meta device from the model "
        "configs shipped with the plugins (no weights, no download) and print trainable / "
        "frozen parameters, gradient and optimizer-state bytes under the recipe's precision, an "
        "activation-memory estimate per sample at the recipe's frame count, the teacher-cache "
        "estimate, and which GPU sizes (24 / 40 / 80 GB) the run fits under DDP, FSDP (full "
        "shard) and ZeRO-2.",
        examples="  geovr plan recipes/qwen_vggt.toml\n"
        "  geovr plan recipes/qwen_vggt.toml --gpus 8 --entries 5000 --json\n"
        "  geovr plan recipes/tiny_synthetic.toml\n",
    )
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--gpus", type=int, default=None, help="processes (GPUs) to shard over (default 8)")
    p.add_argument("--entries", type=int, default=None, help="distinct cache entries when the data is not here")
    p.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="sequence length per sample (default: visual tokens from the recipe's frame count and size "
        "+ one camera token per frame + the scale token + 128 text tokens)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_plan)

    p = add_verb(
        subparsers,
        "export",
        help="write a trained student as a plain transformers model directory",
        description="Rebuild the student of RUN_DIR from its recipe.toml, load the newest checkpoint (or "
        "--checkpoint) and save it with save_pretrained: LoRA merged, without geometry tokens "
        "or objective heads, loadable with transformers alone.",
        examples="  geovr export runs/tiny_synthetic exported/tiny\n"
        "  geovr export runs/qwen_vggt out/qwen-geo --checkpoint "
        "runs/qwen_vggt/checkpoints/step-00002000\n",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--checkpoint", default=None, help="a checkpoint directory (default: the newest of RUN_DIR)")
    p.set_defaults(func=run_export)

    from geovr.train.released import add_parser as add_import_parser

    add_import_parser(subparsers)


def _datasets_or_none(recipe):
    """The recipe's built datasets, or ``None`` when the data is not on this machine."""
    from geovr.errors import GeovrError
    from geovr.train.runner import build_seeded

    try:
        return build_seeded(recipe, stages=("data",)).datasets
    except GeovrError:
        return None


def run_cache(args) -> int:
    """``geovr cache RECIPE [key=value ...] [--estimate [--json]]``."""
    import json
    import os

    from geovr.recipe import load_recipe

    recipe = load_recipe(args.recipe, list(args.overrides), require_training=True)
    if args.estimate:
        from geovr.train.estimate import estimate_cache, format_estimate

        datasets = None if args.entries is not None else _datasets_or_none(recipe)
        est = estimate_cache(recipe, datasets=datasets, entries=args.entries, tflops=args.tflops)
        print(json.dumps(est, indent=2) if args.json else format_estimate(est))
        return 0
    from geovr.train.runner import build_seeded
    from geovr.train.teacher_cache import precompute

    device = args.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    ctx = build_seeded(recipe, device=device, stages=("teacher", "metric_teacher", "data"))
    stats = precompute(ctx, progress=not args.quiet)
    if args.json:
        print(json.dumps({k: v for k, v in stats.items() if k != "paths"}, indent=2))
    where = f" (process {stats['rank']} of {stats['world']})" if stats["world"] > 1 else ""
    print(
        f"geovr: {stats['samples']} of {stats['groups']} distinct entries{where} in {stats['cache_dir']}: "
        f"{stats['written']} written, {stats['hits']} already present, {stats['stale']} stale recomputed",
        file=sys.stderr,
    )
    return 0


def run_plan(args) -> int:
    """``geovr plan RECIPE [key=value ...] [--json]``."""
    import json

    from geovr.recipe import load_recipe
    from geovr.train.plan import format_plan, plan

    recipe = load_recipe(args.recipe, list(args.overrides), require_training=True)
    datasets = None if args.entries is not None else _datasets_or_none(recipe)
    report = plan(recipe, datasets=datasets, entries=args.entries, gpus=args.gpus, tokens=args.tokens)
    print(json.dumps(report, indent=2) if args.json else format_plan(report))
    return 0


def run_export(args) -> int:
    """``geovr export RUN_DIR DEST``."""
    from geovr.train.export import export

    dest = export(args.run_dir, args.dest, checkpoint=args.checkpoint)
    print(f"geovr: exported {args.run_dir} to {dest}", file=sys.stderr)
    return 0
