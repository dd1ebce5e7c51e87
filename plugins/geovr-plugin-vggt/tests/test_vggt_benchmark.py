"""The forward benchmark's worker runs and reports sane numbers (tiny config, small images)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
from geovr_plugin_vggt.testing import single_thread  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "vggt_forward.py"


def test_benchmark_worker_measures_tiny_forward():
    if not SCRIPT.is_file():
        pytest.skip(f"{SCRIPT} not present (plugin installed outside the geovr repository)")
    spec = importlib.util.spec_from_file_location("vggt_forward_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with single_thread():
        for backend in ("sdpa", "math"):
            res = bench.worker(
                {"config": "tiny", "frames": 2, "backend": backend, "size": 28, "repeats": 1, "warmup": 0}
            )
            assert res["backend"] == backend and res["seconds"] > 0
            assert res["fps"] == pytest.approx(2 / res["seconds"])
            assert res["peak_rss_gib"] >= res["model_rss_gib"] > 0
    assert bench._estimate_gib("1b", 8, 518, "math") > bench._estimate_gib("1b", 8, 518, "sdpa") > 4.7
