"""Built-in plugin of geovr.data: registers its components through the public hooks (torch-free).

* datasets ``synthetic_rooms`` (procedural rooms rendered on the fly), ``video_qa`` (VSI-format
  jsonl + mp4 videos) and ``video_conversations`` (LLaVA-style conversations: JSON/JSONL + videos or tar
  shards, weighted mixtures);
* teacher ``oracle`` (exact ground-truth geometry of the batch);
* CLI verbs ``geovr data synth`` (write a synthetic dataset to disk) and ``geovr data inspect``.
"""

from __future__ import annotations

from geovr.data.configs import OracleTeacherConfig, SyntheticRoomsConfig, VideoConversationsConfig, VideoQAConfig
from geovr.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    register(
        "synthetic_rooms",
        "geovr.data.synthetic.dataset:build",
        config=SyntheticRoomsConfig,
        summary="procedural 3-D rooms rendered on the fly with exact geometry and VSI-style questions",
    )
    register(
        "video_qa",
        "geovr.data.video_qa:build",
        config=VideoQAConfig,
        summary="VSI-format jsonl questions over mp4 videos (PyAV), optional geometry files",
    )
    register(
        "video_conversations",
        "geovr.data.conversations:build",
        config=VideoConversationsConfig,
        summary="LLaVA-style conversations (VSI-590K, VLM-3R) from JSON/JSONL or tar shards, 2-fps "
        "sampling, weighted mixtures",
    )


@hookimpl
def register_teachers(register):
    register(
        "oracle",
        "geovr.data.oracle:build",
        config=OracleTeacherConfig,
        summary="exact ground-truth geometry of the batch (depth, poses, points, Fourier patch features)",
    )


@hookimpl
def register_commands(subparsers):
    from geovr.data.synthetic.cli import add_parser

    add_parser(subparsers)
