"""``geovr da3 ...`` commands (argparse only at import; torch is imported when a command runs)."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  geovr da3 convert depth-anything/DA3-GIANT-1.1 da3_giant.safetensors                 (from the local HF cache)
  geovr da3 convert ~/ckpt/DA3METRIC-LARGE da3_metric.safetensors --model-config metric_large
"""


def _convert(args) -> int:
    from geovr_plugin_da3.checkpoint import convert_checkpoint

    print(f"wrote {convert_checkpoint(args.src, args.dst, model_config=args.model_config)}")
    return 0


def add_commands(subparsers) -> argparse.ArgumentParser:
    """Register the ``da3`` verb and its ``convert`` sub-command on ``subparsers``."""
    parser = subparsers.add_parser(
        "da3",
        help="Depth Anything 3 teacher utilities (checkpoint conversion)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="da3_command", metavar="COMMAND")
    sub.required = True
    conv = sub.add_parser(
        "convert",
        help="check an official DA3 checkpoint and write the tensors geovr uses",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="Read an official DA3 checkpoint (safetensors, weights-only pickle, directory "
        "or cached HF id), check every tensor against the model configuration by "
        "name and shape, leave out the unused 3-D Gaussian head and write one "
        "safetensors file (temporary name, then rename).",
    )
    conv.add_argument("src", help="checkpoint file, directory, or HF id in the local cache")
    conv.add_argument("dst", help="output .safetensors path")
    conv.add_argument(
        "--model-config",
        default="giant",
        help="'giant' (default), 'large', 'metric_large', 'tiny', 'tiny_metric' or a JSON path",
    )
    conv.set_defaults(func=_convert)
    return parser
