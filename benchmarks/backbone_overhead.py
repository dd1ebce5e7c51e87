"""Step-time overhead of geometry tokens + grid extraction in the Qwen-VL backbones.

Compares, on the same prepared inputs of a tiny random-init model (CPU), one training step
(forward + backward) of

* **plain**: the HF model's own forward, ``model(**inputs).loss.backward()``;
* **geometry**: ``backbone(inputs, geometry=GeometryRequest(layers, camera_tokens, scale_token))``
  with camera + scale tokens inserted and visual grids extracted for two layers, backward through
  ``lm_loss`` + the geometry outputs.

Steps alternate between the two (so load on a shared machine hits both alike); the median of each is
reported with their ratio. Target: overhead <= 10 %.

Usage::

    python benchmarks/backbone_overhead.py [--kind qwen3_vl] [--frames 8] [--size 112] [--steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> None:
    """Run the comparison and print one line per variant plus the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", default="qwen3_vl", choices=["qwen3_vl", "qwen2_5_vl"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=112, help="frame side in pixels")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from geovr.protocols import GeometryRequest
    from geovr_plugin_qwen_vl.testing import tiny_backbone, tiny_batch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bb = tiny_backbone(args.kind, freeze=["vision"]).train()
    inputs = bb.prepare(tiny_batch(args.batch, args.frames, args.size))
    hf_inputs = {k: v for k, v in inputs.items() if not k.startswith("_")}
    req = GeometryRequest(layers=(1, bb.num_layers), camera_tokens=True, scale_token=True)

    def plain_step():
        bb.model(**hf_inputs).loss.backward()

    def geo_step():
        out = bb(inputs, geometry=req)
        extra = sum(g.float().mean() for g in out.hidden.values()) + out.camera.mean() + out.scale.mean()
        (out.lm_loss + extra).backward()

    times = {"plain": [], "geometry": []}
    for i in range(args.steps + 3):
        for name, fn in (
            (("plain", plain_step), ("geometry", geo_step))
            if i % 2 == 0
            else (("geometry", geo_step), ("plain", plain_step))
        ):
            bb.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if i >= 3:  # warm-up
                times[name].append(dt)
    S, h, w = inputs["_grid"]
    L = inputs["input_ids"].shape[1]
    print(
        f"{args.kind}: B={args.batch} S={S} grid {h}x{w} tokens/frame, L={L} (+{S + 1} geometry tokens), "
        f"{args.steps} steps, {args.threads} thread(s)"
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:9s} median step {v * 1e3:8.2f} ms")
    ratio = med["geometry"] / med["plain"]
    print(f"  ratio geometry/plain = {ratio:.3f}  (overhead {100 * (ratio - 1):+.1f} %, target <= +10 %)")


if __name__ == "__main__":
    main()
