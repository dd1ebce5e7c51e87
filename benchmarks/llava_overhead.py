"""Step-time overhead of geometry tokens + grid extraction in the llava_onevision backbone.

On the same prepared inputs of the tiny random-init model (CPU), alternates one training step
(forward + backward) of

* **plain**: the HF model's own forward, ``model(**inputs).loss.backward()``;
* **geometry**: ``backbone(inputs, geometry=GeometryRequest(layers=(1, L), camera_tokens, scale_token))``,
  backward through ``lm_loss`` + the geometry outputs;

and prints the median of each and their ratio. Usage::

    python plugins/geovr-plugin-llava/benchmarks/llava_overhead.py [--frames 8] [--steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> None:
    """Run the comparison and print one line per variant plus the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from geovr.protocols import GeometryRequest
    from geovr_plugin_llava.testing import tiny_backbone, tiny_batch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bb = tiny_backbone().train()
    inputs = bb.prepare(tiny_batch(args.batch, args.frames))
    hf_inputs = {k: v for k, v in inputs.items() if not k.startswith("_")}
    req = GeometryRequest(layers=(1, bb.num_layers), camera_tokens=True, scale_token=True)

    def plain_step():
        bb.model(**hf_inputs).loss.backward()

    def geometry_step():
        out = bb(inputs, geometry=req)
        (out.lm_loss + sum(g.mean() for g in out.hidden.values()) + out.camera.mean() + out.scale.mean()).backward()

    times = {"plain": [], "geometry": []}
    for step in range(args.steps + 3):
        for name, fn in (("plain", plain_step), ("geometry", geometry_step)):
            bb.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            fn()
            if step >= 3:  # warm-up steps are not timed
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    T = inputs["input_ids"].shape[1]
    print(
        f"llava_onevision tiny, B={args.batch} S={args.frames} T={T} tokens, {args.steps} steps, "
        f"{args.threads} thread(s)"
    )
    print(f"plain HF forward+backward : {med['plain']:.2f} ms")
    print(f"geometry tokens + grids   : {med['geometry']:.2f} ms")
    print(f"ratio                     : {med['geometry'] / med['plain']:.3f}")


if __name__ == "__main__":
    main()
