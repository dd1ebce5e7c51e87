"""``geovr ask MODEL_OR_RUN VIDEO "question"``: one answer from an exported model or a run's last checkpoint.

Torch-free at import; the model is loaded when the verb runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from geovr.cli._util import add_verb, print_json
from geovr.errors import UsageError


def add_parser(sub) -> None:
    p = add_verb(
        sub,
        "ask",
        help="answer one question about a video with a trained model",
        description="Load an exported model (a `geovr export` directory, or any transformers checkpoint "
        "a registered backbone loads) or a training run (its recipe and newest checkpoint), "
        "sample frames of VIDEO uniformly and print the model's answer to QUESTION. A run "
        "uses its training data's num_frames and image_size unless --num-frames / "
        "--frame-size are given.",
        examples='  geovr ask exported/tiny room.mp4 "How many chairs are in the room?"\n'
        '  geovr ask runs/tiny_synthetic room.mp4 "How many chairs are in the room?"\n'
        '  geovr ask exported/tiny room.mp4 "Which is closer to the sofa?" '
        '--options "A. lamp" "B. table"\n'
        '  geovr ask runs/qwen_vggt scene.mp4 "How long is the room (m)?" --num-frames 32 --json\n',
    )
    p.add_argument("model", metavar="MODEL_OR_RUN", help="exported model directory or training run directory")
    p.add_argument("video", metavar="VIDEO", help="video file (mp4 or anything PyAV decodes)")
    p.add_argument("question", metavar="QUESTION")
    p.add_argument("--options", nargs="+", metavar="OPTION", help='answer options, e.g. "A. lamp" "B. table"')
    p.add_argument(
        "--num-frames",
        type=int,
        default=None,
        help="frames sampled uniformly (default: the run's training setting, else 8)",
    )
    p.add_argument(
        "--frame-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="resize frames to H W (default: the run's training image_size, else unchanged)",
    )
    p.add_argument("--max-new-tokens", type=int, default=32, help="answer length limit (default 32)")
    p.add_argument("--checkpoint", default=None, help="with a run: this checkpoint directory instead of the newest")
    p.add_argument("--backbone", metavar="NAME", help="backbone for an exported model (default: from config.json)")
    p.add_argument("--device", default=None, help="device (default: cuda if available, else cpu)")
    p.add_argument("--json", action="store_true", help="print {answer, question, model, video, frames} as JSON")
    p.set_defaults(func=run)


def _kind(path: Path) -> str:
    if not path.exists():
        raise UsageError(f"model not found: {path} (give a `geovr export` directory or a training run directory)")
    if path.is_dir() and (path / "recipe.toml").is_file():
        return "run"
    if path.is_dir() and (path / "config.json").is_file():
        return "model"
    raise UsageError(
        f"{path}: neither a training run directory (no recipe.toml) nor an exported model (no config.json)"
    )


def _training_frames(run: Path) -> tuple[int | None, tuple[int, int] | None]:
    """``num_frames`` and ``image_size`` of the run's ``data.train`` table (``None`` when not set)."""
    import tomllib

    try:
        raw = tomllib.loads((run / "recipe.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None, None
    train = (raw.get("data") or {}).get("train") or {}
    n, size = train.get("num_frames"), train.get("image_size")
    return (n if isinstance(n, int) else None), (tuple(size) if isinstance(size, list) and len(size) == 2 else None)


def run(args) -> int:
    model, video = Path(args.model), Path(args.video)
    if not video.is_file():
        raise UsageError(f"video not found: {video}")
    kind = _kind(model)
    if args.num_frames is not None and args.num_frames < 1:
        raise UsageError(f"--num-frames must be >= 1, got {args.num_frames}")
    num_frames, size = _training_frames(model) if kind == "run" else (None, None)
    num_frames = args.num_frames or num_frames or 8
    size = tuple(args.frame_size) if args.frame_size else size

    from geovr.data.video import read_video

    frames, indices = read_video(video, num_frames=num_frames)  # [S,3,H,W] float in [0,1], [S]
    if size is not None and tuple(frames.shape[-2:]) != size:
        from geovr.data.video_qa import resize_sample

        frames = resize_sample(frames, size)[0]
    device = args.device or _default_device()
    backbone = _load(kind, model, args, device)
    from geovr.protocols import Batch

    batch = Batch(
        frames=frames[None],
        frame_indices=indices[None],
        sample_ids=["ask"],
        questions=[args.question],
        answers=[""],
        options=[list(args.options) if args.options else None],
        question_types=["open"],
        scene_ids=[video.stem],
    )
    import torch

    with torch.no_grad():
        answer = backbone.generate(batch.to(device), max_new_tokens=args.max_new_tokens, do_sample=False)[0]
    if args.json:
        print_json(
            {
                "answer": answer,
                "question": args.question,
                "options": args.options,
                "model": str(model),
                "video": str(video),
                "frames": [int(i) for i in indices],
            }
        )
    else:
        print(answer)
    return 0


def _load(kind: str, model: Path, args, device: str):
    if kind == "run":
        from geovr.train.export import load_student

        print(f"geovr: loading the student of {model}", file=sys.stderr)
        backbone, _, ckpt = load_student(model, checkpoint=args.checkpoint, device=device)
        print(f"geovr: checkpoint {ckpt}", file=sys.stderr)
        return backbone.eval() if hasattr(backbone, "eval") else backbone
    if args.checkpoint:
        raise UsageError("--checkpoint goes with a training run directory, not an exported model")
    from geovr.eval.cli import backbone_for_checkpoint
    from geovr.plugins import get_registry
    from geovr.protocols import BuildContext

    name = backbone_for_checkpoint(str(model), args.backbone)
    print(f"geovr: loading {name} from {model} on {device}", file=sys.stderr)
    ctx = BuildContext(device=device)
    backbone = get_registry().get("backbone", name).build({"pretrained": str(model)}, ctx)
    return backbone.eval() if hasattr(backbone, "eval") else backbone


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
