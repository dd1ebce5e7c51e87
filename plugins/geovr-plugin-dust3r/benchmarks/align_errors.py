"""Pose and depth error of the two DUSt3R derivations against the synthetic world's exact geometry.

The tiny DUSt3R has random weights, so the pair predictions are derived from ground truth
(:mod:`geovr_plugin_dust3r.simulate`): every pair at its own scale, per-pixel noise, a small rigid error
per pair, and pairs of frames more than ``--overlap`` apart treated as non-overlapping (large rigid
error, low confidence). ``oneref`` (every frame paired with frame 0) and ``global`` (complete graph and
a sliding window) see the same prediction for the same pair. Prints a markdown table of mean errors
over the scenes, for frames within ``--overlap`` of frame 0 ("near") and the others ("far").

    python plugins/geovr-plugin-dust3r/benchmarks/align_errors.py --scenes 6 --json
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from tqdm import tqdm

from geovr_plugin_dust3r.global_align import global_align, make_edges
from geovr_plugin_dust3r.pointmaps import frames_from_pairs
from geovr_plugin_dust3r.simulate import oneref_pairs, pair_predictions, pose_depth_errors, synthetic_scene

METRICS = ("rot_deg", "trans", "depth_absrel", "focal_rel")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=6, help="synthetic scenes (walk trajectories)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, nargs=2, default=[24, 32], metavar=("H", "W"))
    ap.add_argument("--noise", type=float, default=0.02, help="per-pixel noise, fraction of depth")
    ap.add_argument("--pair-error-deg", type=float, default=1.0, help="rigid error of each pair's second view")
    ap.add_argument("--overlap", type=int, default=2, help="frames further apart than this do not overlap")
    ap.add_argument("--niter", type=int, default=300)
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON after the table")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    kw = {"noise": args.noise, "pair_error_deg": args.pair_error_deg, "overlap": args.overlap}
    methods = {"oneref": None, "global complete": "complete", "global swin-2-noncyclic": "swin-2-noncyclic"}
    sums: dict = {m: {g: {k: [] for k in METRICS} for g in ("near", "far")} for m in methods}
    seconds = {m: 0.0 for m in methods}
    S = args.frames
    near = torch.arange(S) <= args.overlap
    for scene_id in tqdm(range(args.scenes), desc="scenes"):
        scene = synthetic_scene(S, tuple(args.size), seed=scene_id, trajectory="walk")
        for name, graph in methods.items():
            t0 = time.perf_counter()
            if graph is None:
                out = frames_from_pairs(*oneref_pairs(scene, seed=scene_id, **kw))
            else:
                edges = make_edges(S, graph)
                pi, pj, ci, cj = (x[None].float() for x in pair_predictions(scene, edges, seed=scene_id, **kw))
                out = global_align(edges, pi, pj, ci, cj, S, niter=args.niter)
            seconds[name] += time.perf_counter() - t0
            err = pose_depth_errors(out, scene)
            for k in METRICS:
                sums[name]["near"][k] += err[k][near][1:].tolist()  # frame 0 is the reference
                sums[name]["far"][k] += err[k][~near].tolist()
    res = {
        m: {g: {k: sum(v) / max(1, len(v)) for k, v in d.items()} for g, d in groups.items()}
        for m, groups in sums.items()
    }
    print(
        f"{args.scenes} scenes x {S} frames {args.size[0]}x{args.size[1]}, noise {args.noise}, pair error "
        f"{args.pair_error_deg} deg, overlap {args.overlap}, niter {args.niter}\n"
    )
    print("| method | rot near (deg) | rot far (deg) | centre near | centre far | depth AbsRel | focal rel | s/video |")
    print("|---|---|---|---|---|---|---|---|")
    for m, r in res.items():
        allfr = {
            k: (sum(sums[m]["near"][k]) + sum(sums[m]["far"][k])) / (len(sums[m]["near"][k]) + len(sums[m]["far"][k]))
            for k in METRICS
        }
        print(
            f"| {m} | {r['near']['rot_deg']:.2f} | {r['far']['rot_deg']:.2f} | {r['near']['trans']:.3f} | "
            f"{r['far']['trans']:.3f} | {allfr['depth_absrel']:.4f} | {allfr['focal_rel']:.4f} | "
            f"{seconds[m] / args.scenes:.2f} |"
        )
    if args.json:
        print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
