"""``geovr vggt ...`` commands (argparse only at import; torch is imported when a command runs)."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  geovr vggt convert ~/Downloads/model.pt vggt_1b.safetensors
  geovr vggt convert facebook/VGGT-1B vggt_1b.safetensors          (from the local HF cache)
  geovr vggt convert tiny.pt tiny.safetensors --model-config tiny
"""


def _convert(args) -> int:
    from geovr_plugin_vggt.checkpoint import convert_checkpoint

    out = convert_checkpoint(args.src, args.dst, model_config=args.model_config, verify=not args.no_verify)
    print(f"wrote {out}")
    return 0


def add_commands(subparsers) -> argparse.ArgumentParser:
    """Register the ``vggt`` verb and its ``convert`` sub-command on ``subparsers``."""
    parser = subparsers.add_parser(
        "vggt",
        help="VGGT teacher utilities (checkpoint conversion)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="vggt_command", metavar="COMMAND")
    sub.required = True
    conv = sub.add_parser(
        "convert",
        help="convert a VGGT checkpoint (model.pt) to safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="Read a VGGT checkpoint once (weights-only unpickling), check its keys "
        "against the model configuration and write it as safetensors "
        "(temporary file, then rename).",
    )
    conv.add_argument("src", help="model.pt / .safetensors path, directory, or HF id in the local cache")
    conv.add_argument("dst", help="output .safetensors path")
    conv.add_argument(
        "--model-config", default="1b", help="'1b' (default), 'tiny' or a JSON config path used to verify the keys"
    )
    conv.add_argument("--no-verify", action="store_true", help="skip the key check")
    conv.set_defaults(func=_convert)
    return parser
