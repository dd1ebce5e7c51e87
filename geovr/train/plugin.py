"""Built-in plugin of geovr.train: the ``accelerate`` trainer and the ``cache`` / ``export`` / ``import`` verbs.

Torch-free at import: the trainer factory is a lazy string and the verbs import their work on use.
"""

from __future__ import annotations

import argparse
import sys

from geovr import hookimpl
from geovr.train.configs import AccelerateTrainerConfig


@hookimpl
def register_trainers(register):
    register("accelerate", "geovr.train.trainer:build", config=AccelerateTrainerConfig,
             summary="HF accelerate trainer: LM + weighted geometric losses, AdamW groups, cosine LR, "
                     "checkpoints/resume, teacher cache (DDP/FSDP/DeepSpeed via accelerate config)")


def _verb(subparsers, name, *, help, description, examples):
    return subparsers.add_parser(name, help=help, description=description, epilog=f"examples:\n{examples}",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


@hookimpl
def register_commands(subparsers):
    p = _verb(subparsers, "cache", help="precompute teacher outputs for a recipe's training data",
              description="Run the recipe's teacher (and metric teacher) over data.train and store the outputs as "
                          "safetensors in the teacher cache (trainer.cache_dir, $GEOVR_CACHE_DIR or "
                          "~/.cache/geovr/teacher), keyed by the teacher's cache key, sample id, frame indices, "
                          "resolution and layers. Existing entries are reused; stale ones are recomputed. Train "
                          "from the cache with trainer.cache=\"auto\" (or \"only\" to forbid running the teacher).",
              examples="  geovr cache recipes/tiny_synthetic.toml\n"
                       "  geovr cache recipes/qwen_vggt.toml trainer.cache_dir=\"/data/geovr-cache\"\n")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--device", default="cpu", help="device the teachers run on (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_cache)

    p = _verb(subparsers, "export", help="write a trained student as a plain transformers model directory",
              description="Rebuild the student of RUN_DIR from its recipe.toml, load the newest checkpoint (or "
                          "--checkpoint) and save it with save_pretrained: LoRA merged, without geometry tokens or "
                          "objective heads, loadable with transformers alone.",
              examples="  geovr export runs/tiny_synthetic exported/tiny\n"
                       "  geovr export runs/qwen_vggt out/qwen-geo --checkpoint runs/qwen_vggt/checkpoints/step-00002000\n")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--checkpoint", default=None, help="a checkpoint directory (default: the newest of RUN_DIR)")
    p.set_defaults(func=run_export)

    from geovr.train.released import add_parser as add_import_parser

    add_import_parser(subparsers)


def run_cache(args) -> int:
    """``geovr cache RECIPE [key=value ...]``."""
    from geovr.recipe import load_recipe
    from geovr.train.cache import precompute
    from geovr.train.runner import build_seeded

    recipe = load_recipe(args.recipe, list(args.overrides), require_training=True)
    ctx = build_seeded(recipe, device=args.device, stages=("teacher", "metric_teacher", "data"))
    stats = precompute(ctx, progress=not args.quiet)
    print(f"geovr: cached {stats['samples']} samples in {stats['cache_dir']}: {stats['written']} written, "
          f"{stats['hits']} already present, {stats['stale']} stale recomputed", file=sys.stderr)
    return 0


def run_export(args) -> int:
    """``geovr export RUN_DIR DEST``."""
    from geovr.train.export import export

    dest = export(args.run_dir, args.dest, checkpoint=args.checkpoint)
    print(f"geovr: exported {args.run_dir} to {dest}", file=sys.stderr)
    return 0
