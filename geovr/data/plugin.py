"""Built-in plugin of geovr.data: registers its components through the public hooks (torch-free).

* datasets ``synthetic_rooms`` (procedural rooms rendered on the fly) and ``video_qa`` (VSI-format
  jsonl + mp4 videos);
* teacher ``oracle`` (exact ground-truth geometry of the batch);
* CLI verb ``geovr data synth`` (write a synthetic VSI-style dataset to disk).
"""

from __future__ import annotations

from geovr import hookimpl
from geovr.data.configs import OracleTeacherConfig, SyntheticRoomsConfig, VideoQAConfig


@hookimpl
def register_datasets(register):
    register("synthetic_rooms", "geovr.data.synthetic.dataset:build", config=SyntheticRoomsConfig,
             summary="procedural 3-D rooms rendered on the fly with exact geometry and VSI-style questions")
    register("video_qa", "geovr.data.video_qa:build", config=VideoQAConfig,
             summary="VSI-format jsonl questions over mp4 videos (PyAV), optional geometry files")


@hookimpl
def register_teachers(register):
    register("oracle", "geovr.data.oracle:build", config=OracleTeacherConfig,
             summary="exact ground-truth geometry of the batch (depth, poses, points, Fourier patch features)")


@hookimpl
def register_commands(subparsers):
    from geovr.data.synthetic.cli import add_parser

    add_parser(subparsers)
