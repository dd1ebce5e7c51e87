"""VGGT forward throughput and peak memory on CPU: SDPA vs plain attention math, side by side.

Each measurement runs in a fresh subprocess so its peak RSS (``ru_maxrss``) belongs to that
configuration alone. Random weights (no checkpoint needed); frames ``[1,S,3,size,size]`` in [0,1];
camera, depth and point heads (the track head is idle without query points).

Usage::

    python benchmarks/vggt_forward.py                         # tiny config, S in {2, 8}, 518 px
    python benchmarks/vggt_forward.py --configs tiny,1b       # + the 1B config (minutes, ~10 GiB)
    python benchmarks/vggt_forward.py --configs 1b --frames 8 --backends sdpa

A run whose estimated memory exceeds the available memory (``MemAvailable``) is skipped with the
estimate instead of being started (the plain-math 1B run at S = 8 materialises a 16×11k×11k score
matrix, about 7.7 GiB per attention call).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

GIB = 1024**3


def _mem_available() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return float("inf")


def _estimate_gib(config: str, frames: int, size: int, backend: str) -> float:
    """Rough peak estimate: weights + kept tokens + DPT maps + (math only) the attention scores."""
    if config == "tiny":
        return 1.0
    p = 5 + (size // 14) ** 2
    weights = 1_256_537_516 * 4 / GIB
    tokens = 6 * frames * p * 2048 * 4 / GIB
    dpt = 3 * frames * 128 * size * size * 4 / GIB
    scores = 2 * 16 * (frames * p) ** 2 * 4 / GIB if backend == "math" else 0.0
    return weights + tokens + dpt + scores + 1.0


def worker(spec: dict) -> dict:
    """Run one configuration in this process and return its measurements."""
    import resource

    import torch

    from geovr_plugin_vggt.model import VGGT

    torch.manual_seed(0)
    if spec["config"] == "tiny":
        model = VGGT.from_config("tiny", enable_track=False)  # the config shipped with the plugin
    else:
        model = VGGT(enable_track=False)
    model.eval().set_attention(spec["backend"])
    frames = torch.rand(1, spec["frames"], 3, spec["size"], spec["size"])
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    times = []
    with torch.no_grad():
        for _ in range(spec["repeats"] + spec["warmup"]):
            t0 = time.perf_counter()
            out = model(frames)
            times.append(time.perf_counter() - t0)
            del out
    times = times[spec["warmup"] :]
    best = min(times)
    return {
        **spec,
        "seconds": best,
        "fps": spec["frames"] / best,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "model_rss_gib": rss_model,
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    """Run every requested configuration in a subprocess and print the side-by-side table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="tiny", help="comma list of tiny,1b (default: tiny)")
    ap.add_argument("--frames", default="2,8", help="comma list of frame counts S (default: 2,8)")
    ap.add_argument("--backends", default="sdpa,math", help="comma list of sdpa,math,xformers")
    ap.add_argument("--size", type=int, default=518, help="square image side in pixels (multiple of 14)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs (default: 3 tiny, 1 for 1b)")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON lines too")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    rows = []
    for config in args.configs.split(","):
        for frames in (int(s) for s in args.frames.split(",")):
            row = {"config": config, "frames": frames}
            for backend in args.backends.split(","):
                need, avail = _estimate_gib(config, frames, args.size, backend), _mem_available()
                if need > avail:
                    row[backend] = {"skipped": f"needs ~{need:.1f} GiB, {avail:.1f} GiB available"}
                    print(f"[skip] {config} S={frames} {backend}: {row[backend]['skipped']}", flush=True)
                    continue
                repeats = args.repeats or (3 if config == "tiny" else 1)
                spec = {
                    "config": config,
                    "frames": frames,
                    "backend": backend,
                    "size": args.size,
                    "repeats": repeats,
                    "warmup": 1 if config == "tiny" else 0,
                }
                print(f"[run ] {config} S={frames} {backend} ...", flush=True)
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    env=os.environ.copy(),
                )
                if proc.returncode != 0:
                    row[backend] = {"skipped": f"failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"}
                    print(f"[fail] {row[backend]['skipped']}", flush=True)
                    continue
                row[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
                if args.json:
                    print(json.dumps(row[backend]))
            rows.append(row)
    backends = args.backends.split(",")
    print(f"\nVGGT forward on CPU, {args.size}x{args.size} px, batch 1, random weights, camera+depth+point heads")
    head = f"{'config':<6} {'S':>3} " + " ".join(f"{b + ' fps':>10} {b + ' s':>9} {b + ' RSS':>10}" for b in backends)
    if "sdpa" in backends and "math" in backends:
        head += f" {'sdpa/math':>10}"
    print(head)
    for row in rows:
        line = f"{row['config']:<6} {row['frames']:>3} "
        cells = []
        for b in backends:
            r = row.get(b, {})
            if "fps" in r:
                cells.append(f"{r['fps']:>10.3f} {r['seconds']:>9.2f} {r['peak_rss_gib']:>8.2f}Gi")
            else:
                cells.append(f"{'skipped':>10} {'-':>9} {'-':>10}")
        line += " ".join(cells)
        if "fps" in row.get("sdpa", {}) and "fps" in row.get("math", {}):
            line += f" {row['sdpa']['fps'] / row['math']['fps']:>9.2f}x"
        print(line)
    skipped = [
        (row["config"], row["frames"], b, row[b]["skipped"])
        for row in rows
        for b in backends
        if "skipped" in row.get(b, {})
    ]
    for config, frames, b, why in skipped:
        print(f"note: {config} S={frames} {b} skipped: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
