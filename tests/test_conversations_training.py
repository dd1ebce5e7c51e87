"""Training on a ``video_conversations`` mixture: the run log counts samples per source and bad records, a
resumed run continues the exact data order, and too many bad records stop the run with a clear error."""

from __future__ import annotations

import json

import pytest

from geovr.data.configs import VideoConversationsConfig
from geovr.data.conversations import VideoConversationsDataset
from geovr.data.synthetic.cli import synthesize
from geovr.data.writers import convert
from geovr.errors import DataError
from geovr.testing import tiny
from geovr.testing.multiprocess import launch
from geovr.train.configs import AccelerateTrainerConfig
from geovr.train.runlog import read_metrics
from geovr.train.trainer import build


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv_train")
    synthesize(root, scenes=2, frames=8, size=(32, 32), seed=2, fps=4, progress=False)
    convert(root, "wds", shard_size=4)
    return root


class Kill:
    def __init__(self, at):
        self.at = at

    def on_step_end(self, state):
        if state.step == self.at:
            raise KeyboardInterrupt


def run(out, synth, *, seen=None, max_steps=5, callbacks=(), resume=False):
    ctx = tiny.tiny_context(output_dir=str(out), n=4)
    cfg = VideoConversationsConfig(
        sources=[
            {"name": "vsi", "annotations": str(synth / "conversations.jsonl"), "video_root": str(synth)},
            {"name": "vlm3r", "shards": str(synth / "shards" / "*.tar"), "weight": 0.5},
        ],
        image_size=[32, 32],
    )
    ds = VideoConversationsDataset(cfg, seed=ctx.seed)
    if seen is not None:
        load = ds.load

        def spy(i, j):
            seen.append((ds.sources[i].name, j))
            return load(i, j)

        ds.load = spy
    ctx.datasets["train"] = ds
    ctx.callbacks = list(callbacks)
    trainer = AccelerateTrainerConfig(
        batch_size=2, max_steps=max_steps, save_every=2, progress=False, lr=1e-3, head_lr=1e-3, resume=resume
    )
    return build(trainer, ctx).fit(ctx)


def test_run_log_counts_per_source_and_resume_continues_the_data_order(synth, tmp_path):
    ref_seen = []
    run(tmp_path / "ref", synth, seen=ref_seen)
    last = read_metrics(tmp_path / "ref")[-1]
    assert last["data/vsi/samples"] + last["data/vlm3r/samples"] == 10  # 5 steps x 2
    assert last["data/vsi/samples"] > 0 and last["data/vlm3r/samples"] > 0
    assert len(ref_seen) == 10 and len(set(ref_seen)) == 10

    cut_seen = []
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", synth, seen=cut_seen, callbacks=[Kill(3)])  # checkpoint at step 2
    resumed = []
    run(tmp_path / "cut", synth, seen=resumed, resume=True)
    assert resumed == ref_seen[4:]  # exactly the samples after the checkpoint (step 2)
    assert read_metrics(tmp_path / "cut")[-1]["data/vsi/samples"] == last["data/vsi/samples"]


def test_too_many_bad_records_stop_the_run_clearly(synth, tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "videos").symlink_to(synth / "videos")
    lines = (synth / "conversations.jsonl").read_text().splitlines()
    for k in (0, 1):
        rec = json.loads(lines[k])
        rec["video"] = "videos/gone.mp4"
        lines[k] = json.dumps(rec)
    (root / "conversations.jsonl").write_text("\n".join(lines) + "\n")
    ctx = tiny.tiny_context(output_dir=str(tmp_path / "run"), n=4)
    ctx.datasets["train"] = VideoConversationsDataset(
        VideoConversationsConfig(
            annotations=str(root / "conversations.jsonl"),
            video_root=str(root),
            image_size=[32, 32],
            max_skip_fraction=0.1,
        ),
        seed=0,
    )
    with pytest.raises(DataError, match="bad records met in this process .* exceed max_skip_fraction = 0.1"):
        build(AccelerateTrainerConfig(batch_size=2, max_steps=8, progress=False, shuffle=False), ctx).fit(ctx)


DDP_SCRIPT = """
import sys
import torch
torch.set_num_threads(1)
from accelerate.state import PartialState
from geovr.data.configs import VideoConversationsConfig
from geovr.data.conversations import VideoConversationsDataset
from geovr.testing import tiny
from geovr.train.configs import AccelerateTrainerConfig
from geovr.train.trainer import build

out, root = sys.argv[1], sys.argv[2]
ctx = tiny.tiny_context(output_dir=out, n=4)
ds = VideoConversationsDataset(VideoConversationsConfig(sources=[
    {"name": "vsi", "annotations": root + "/conversations.jsonl", "video_root": root},
    {"name": "vlm3r", "shards": root + "/shards/*.tar", "weight": 0.5}], image_size=[32, 32]), seed=0)
seen = []
load = ds.load
ds.load = lambda i, j: seen.append(f"{ds.sources[i].name}:{j}") or load(i, j)
ctx.datasets["train"] = ds
build(AccelerateTrainerConfig(batch_size=2, max_steps=3, progress=False, save_every=0), ctx).fit(ctx)
print("SEEN", " ".join(seen))
PartialState().destroy_process_group()
"""


def test_two_processes_read_disjoint_samples_and_the_log_sums_them(synth, tmp_path):
    outputs = launch(DDP_SCRIPT, tmp_path, tmp_path / "run", synth, timeout=300, name="ddp.py")
    seen = [next(line for line in so.splitlines() if line.startswith("SEEN")).split()[1:] for so, _ in outputs]
    assert len(seen[0]) == len(seen[1]) == 6 and not set(seen[0]) & set(seen[1])
    last = read_metrics(tmp_path / "run")[-1]
    both = seen[0] + seen[1]
    assert last["data/vsi/samples"] == sum(s.startswith("vsi:") for s in both)
    assert last["data/vlm3r/samples"] == sum(s.startswith("vlm3r:") for s in both)
