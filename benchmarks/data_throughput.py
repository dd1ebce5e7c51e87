"""Training-data throughput: decode + 2-fps sampling + resize of ``video_conversations`` samples.

Writes ``--videos`` H.264 videos of ``--seconds`` s at ``--source-fps`` and 640×480 (a moving pattern, a key
frame every ``--gop`` frames), a ``conversations.jsonl`` over them,
and reads every sample through :class:`geovr.data.conversations.VideoConversationsDataset` (``fps = 2``,
4 to ``--max-frames`` frames, resize to ``--resize H W``) with a DataLoader of 0, 1 and 2 workers, once
with seeking and once decoding every frame up to the last one wanted. Prints samples/s side by side.

It then times the tiny Qwen2.5-VL student (the ``tiny_synthetic`` recipe's backbone) on the same samples
(prepare + forward + backward of the LM loss, batch 1) to show how many samples per second training
consumes. The machine's load matters: on a CPU shared with other jobs the numbers fluctuate; rerun on an
idle machine for figures to quote.

Usage::

    python benchmarks/data_throughput.py [--videos 2] [--seconds 60] [--source-fps 24] [--gop 48] [--max-frames 32]
        [--resize 336 448] [--workers 0 1 2] [--student-steps 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def write_videos(root: Path, n: int, seconds: float, fps: int, gop: int) -> None:
    """``n`` 640×480 mp4 videos and a conversations.jsonl naming them."""
    import av
    import numpy as np

    (root / "videos").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:480, 0:640]
    records = []
    for v in range(n):
        path = root / "videos" / f"v{v}.mp4"
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
            stream.options = {"preset": "veryfast", "crf": "23", "g": str(gop)}
            for t in range(int(seconds * fps)):
                img = np.stack([(xx + 4 * t + 37 * v) % 256, (yy + 2 * t) % 256, (xx + yy + t) % 256], -1)
                for packet in stream.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        records.append(
            {
                "id": v,
                "video": f"videos/v{v}.mp4",
                "conversations": [
                    {"from": "human", "value": "<image>\nThese are frames of a video.\nHow many chairs are there?"},
                    {"from": "gpt", "value": "2"},
                ],
            }
        )
    (root / "conversations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def dataset(root: Path, args, seek: bool):
    from geovr.data.configs import VideoConversationsConfig
    from geovr.data.conversations import VideoConversationsDataset

    return VideoConversationsDataset(
        VideoConversationsConfig(
            annotations=str(root / "conversations.jsonl"),
            video_root=str(root),
            fps=2.0,
            min_frames=4,
            max_frames=args.max_frames,
            image_size=list(args.resize),
            seek=seek,
        )
    )


def samples_per_s(ds, workers: int, repeats: int) -> tuple[float, int]:
    """Read every sample ``repeats`` times through a DataLoader; ``(samples/s, frames per sample)``."""
    from torch.utils.data import DataLoader

    from geovr.data.collate import collate

    n, frames = 0, 0
    start = time.perf_counter()
    for _ in range(repeats):
        for batch in DataLoader(ds, batch_size=1, num_workers=workers, collate_fn=collate):
            n += 1
            frames = batch.num_frames
    return n / (time.perf_counter() - start), frames


def student_rate(ds, steps: int) -> float:
    """Samples/s the tiny Qwen2.5-VL student trains on (prepare + forward + backward, batch 1)."""
    import torch

    from geovr.data.collate import collate
    from geovr.protocols import GeometryRequest
    from geovr_plugin_qwen_vl.testing import cached_tiny_checkpoint, tiny_backbone

    torch.manual_seed(0)
    backbone = tiny_backbone("qwen2_5_vl", pretrained=cached_tiny_checkpoint("qwen2_5_vl"))
    backbone.train()
    batches = [collate([ds[i % len(ds)]]) for i in range(steps + 1)]
    times = []
    for k, batch in enumerate(batches):
        t0 = time.perf_counter()
        out = backbone(backbone.prepare(batch), geometry=GeometryRequest(camera_tokens=True, layers=(1,)))
        out.lm_loss.backward()
        if k:  # the first step warms up
            times.append(time.perf_counter() - t0)
    return len(times) / sum(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=2)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--source-fps", type=int, default=24)
    p.add_argument("--max-frames", type=int, default=32)
    p.add_argument("--gop", type=int, default=48, help="frames between key frames (default 48: 2 s at 24 fps)")
    p.add_argument("--resize", type=int, nargs=2, default=[336, 448], metavar=("H", "W"))
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--repeats", type=int, default=2, help="passes over the videos per measurement")
    p.add_argument("--student-steps", type=int, default=3, help="0 skips the student")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_videos(root, args.videos, args.seconds, args.source_fps, args.gop)
        setup = time.perf_counter() - t0
        rows = []
        for workers in args.workers:
            row = {"workers": workers}
            for seek in (True, False):
                rate, frames = samples_per_s(dataset(root, args, seek), workers, args.repeats)
                row["seek" if seek else "full_decode"] = rate
                row["frames"] = frames
            rows.append(row)
        student = student_rate(dataset(root, args, True), args.student_steps) if args.student_steps else None
    result = {
        "videos": args.videos,
        "seconds": args.seconds,
        "source_fps": args.source_fps,
        "source_size": [480, 640],
        "resize": args.resize,
        "rows": rows,
        "student_samples_per_s": student,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "setup_s": setup,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{args.videos} videos of {args.seconds:g} s at {args.source_fps} fps (key frame every {args.gop}), 640x480 -> 2 fps, 4-{args.max_frames} "
        f"frames ({rows[0]['frames']} per sample), resized to {args.resize[0]}x{args.resize[1]}"
    )
    print(f"{'workers':>8} {'seek (samples/s)':>18} {'full decode (samples/s)':>25} {'speed-up':>9}")
    for r in rows:
        print(f"{r['workers']:>8} {r['seek']:>18.2f} {r['full_decode']:>25.2f} {r['seek'] / r['full_decode']:>8.1f}x")
    if student is not None:
        print(f"tiny Qwen2.5-VL student consumes {student:.2f} samples/s (prepare + forward + backward, batch 1)")
    print(
        f"load average {result['load_average'][0]:.1f} on {result['cpus']} CPUs: on a machine shared with other "
        f"jobs these numbers fluctuate; compare the columns of one run, not runs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
