"""Parallel cache fill (2 gloo processes, launched like torchrun): every distinct entry written exactly once,
the union complete and byte-identical to a single-process fill; a second run writes nothing."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import torch

from geovr.testing import tiny
from geovr.testing.multiprocess import launch
from geovr.train.configs import AccelerateTrainerConfig
from geovr.train.teacher_cache import precompute


class SharedVideos(torch.utils.data.Dataset):
    """12 questions over 5 videos (question ``i`` is on video ``i % 5``), each declaring its ``pixel_key``."""

    def __init__(self, n: int = 12, videos: int = 5):
        self.n, self.videos, self.base = n, videos, tiny.TinyVideos(n=videos)

    def __len__(self) -> int:
        return self.n

    def pixel_key(self, i: int) -> str:
        return f"tiny-video-{i % self.videos}|frames=2"

    def __getitem__(self, i: int) -> dict:
        return {**self.base[i % self.videos], "sample_id": f"q{i:03d}", "pixel_key": self.pixel_key(i)}


def context(out):
    ctx = tiny.tiny_context(output_dir=str(out), n=2, metric_teacher=tiny.TinyMetricTeacher())
    ctx.datasets["train"] = SharedVideos()
    return ctx


SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    import torch.distributed as dist
    from geovr.train.configs import AccelerateTrainerConfig
    from geovr.train.teacher_cache import precompute
    from test_cache_parallel import context

    dist.init_process_group("gloo")   # as under torchrun; the fill itself needs no collective
    out = sys.argv[1]
    stats = precompute(context(out + "/run"), progress=False,
                       config=AccelerateTrainerConfig(batch_size=2, cache_dir=out + "/cache"))
    with open(f"{{out}}/rank{{stats['rank']}}.json", "w") as fh:
        json.dump(stats, fh)
    dist.barrier()
    dist.destroy_process_group()
""")


def files(root: Path) -> dict[str, tuple]:
    """``{relative path: (metadata, {name: tensor})}`` (the header's JSON key order is not deterministic in
    safetensors, so entries are compared by content, not bytes)."""
    from safetensors import safe_open

    out = {}
    for p in sorted(root.rglob("*.safetensors")):
        with safe_open(str(p), "pt") as fh:
            out[str(p.relative_to(root))] = (fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()})  # noqa: SIM118
    return out


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0]
        and a[k][1].keys() == b[k][1].keys()
        and all(torch.equal(a[k][1][n], b[k][1][n]) for n in a[k][1])
        for k in a
    )


def test_two_processes_fill_disjoint_shares_identical_to_one(tmp_path):
    single = precompute(
        context(tmp_path / "one"),
        progress=False,
        config=AccelerateTrainerConfig(batch_size=2, cache_dir=str(tmp_path / "one" / "cache")),
    )
    assert single["groups"] == 5 and single["written"] == 10  # 5 videos x (teacher + metric teacher)
    reference = files(tmp_path / "one" / "cache")
    assert len(reference) == 10

    script = SCRIPT.format(tests=str(Path(__file__).parent))
    out = tmp_path / "two"
    launch(script, tmp_path, out, name="fill.py")
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2] and sorted(r["rank"] for r in ranks) == [0, 1]
    assert [r["samples"] for r in ranks] == [3, 2]  # groups 0,2,4 and 1,3
    written = [p for r in ranks for p in r["paths"]]
    assert len(written) == len(set(written)) == 10  # every entry written once, no overlap
    got = files(out / "cache")
    assert {str(Path(p).relative_to(out / "cache")) for p in written} == set(got)
    assert same(got, reference)  # same names, metadata, tensors

    launch(script, tmp_path, out, name="fill.py")  # restart: everything present
    again = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert sum(r["written"] for r in again) == 0 and sum(r["hits"] for r in again) == 10
