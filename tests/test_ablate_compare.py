"""``geovr compare`` statistics against scipy on hand-made reports, its JSON schema, and ``geovr ablate`` end
to end on a tiny folder (2 arms x 2 seeds, a few steps), including resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from geovr.cli.main import main
from geovr.eval.compare import RESULT_FILE, compare, find_reports, mean_ci

REPO = Path(__file__).resolve().parents[1]

# hand-made reports: arm -> seed -> metrics
VALUES = {
    "text_only": {
        0: {"qa_overall": 20.0, "depth_absrel": 0.30, "pose_error": 40.0},
        1: {"qa_overall": 24.0, "depth_absrel": 0.32, "pose_error": 44.0},
        2: {"qa_overall": 22.0, "depth_absrel": 0.29, "pose_error": 39.0},
    },
    "all_four": {
        0: {"qa_overall": 25.0, "depth_absrel": 0.20, "pose_error": 20.0},
        1: {"qa_overall": 26.0, "depth_absrel": 0.23, "pose_error": 25.0},
        2: {"qa_overall": 30.0, "depth_absrel": 0.21, "pose_error": 22.0},
    },
    "depth": {
        0: {"qa_overall": 21.0, "depth_absrel": 0.25, "pose_error": 41.0},
        2: {"qa_overall": 23.5, "depth_absrel": 0.247, "pose_error": 38.5},
    },  # seed 1 missing
}


def _write_runs(root: Path) -> Path:
    for arm, seeds in VALUES.items():
        for seed, metrics in seeds.items():
            d = root / arm / f"seed-{seed}"
            d.mkdir(parents=True)
            (d / RESULT_FILE).write_text(json.dumps({"arm": arm, "seed": seed, "metrics": metrics, "chance": {}}))
    return root


def test_mean_ci_matches_scipy_t_interval():
    x = [0.2, 0.23, 0.21, 0.26]
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert mean_ci(x) == {
        "mean": pytest.approx(np.mean(x)),
        "ci_low": pytest.approx(lo),
        "ci_high": pytest.approx(hi),
        "n": 4,
    }
    assert mean_ci([3.0]) == {"mean": 3.0, "ci_low": None, "ci_high": None, "n": 1}
    # identical values: scipy's interval is nan; never a zero-width interval that "excludes zero"
    assert math.isnan(stats.t.interval(0.95, 1, loc=2.0, scale=0.0)[0])
    assert mean_ci([2.0, 2.0]) == {"mean": 2.0, "ci_low": None, "ci_high": None, "n": 2}


def test_compare_statistics_and_json_schema(tmp_path):
    doc = compare(find_reports([_write_runs(tmp_path / "runs")]))
    assert set(doc) == {"baseline", "arms", "diff"} and doc["baseline"] == "text_only"
    assert set(doc["arms"]) == {"text_only", "all_four", "depth"} and set(doc["diff"]) == {"all_four", "depth"}
    for arm, row in doc["arms"].items():
        assert set(row) >= {"qa_overall", "depth_absrel", "pose_error"}
        for metric, s in row.items():
            assert set(s) == {"mean", "ci_low", "ci_high", "n"}
            x = [VALUES[arm][k][metric] for k in sorted(VALUES[arm])]
            lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
            assert (s["mean"], s["ci_low"], s["ci_high"], s["n"]) == pytest.approx((np.mean(x), lo, hi, len(x)))
    for arm, row in doc["diff"].items():
        for metric, s in row.items():
            assert set(s) == {"mean", "ci_low", "ci_high"}
            seeds = sorted(VALUES[arm])  # paired by seed: only seeds both arms have
            d = [VALUES[arm][k][metric] - VALUES["text_only"][k][metric] for k in seeds]
            lo, hi = stats.t.interval(0.95, len(d) - 1, loc=np.mean(d), scale=stats.sem(d))
            assert (s["mean"], s["ci_low"], s["ci_high"]) == pytest.approx((np.mean(d), lo, hi))
    # the paired interval is narrower than an unpaired one would be here (seed effects cancel)
    s = doc["diff"]["all_four"]["pose_error"]
    assert s["ci_high"] < 0


def test_compare_confidence_level(tmp_path, capsys):
    runs = _write_runs(tmp_path / "runs")
    doc = compare(find_reports([runs]), confidence=0.99)
    assert doc["confidence"] == 0.99
    d = [VALUES["all_four"][k]["pose_error"] - VALUES["text_only"][k]["pose_error"] for k in range(3)]
    lo, hi = stats.t.interval(0.99, 2, loc=np.mean(d), scale=stats.sem(d))
    s = doc["diff"]["all_four"]["pose_error"]
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))
    at95 = compare(find_reports([runs]))["diff"]["all_four"]["pose_error"]
    assert s["ci_low"] < at95["ci_low"] and s["ci_high"] > at95["ci_high"]  # a higher level: a wider interval
    out = tmp_path / "cmp99.json"
    assert main(["compare", str(runs), "--confidence", "0.99", "--json", str(out)]) == 0
    assert "mean [99 % CI] over seeds" in capsys.readouterr().out
    assert json.loads(out.read_text())["confidence"] == 0.99
    for bad in ("1.5", "0", "95"):
        assert main(["compare", str(runs), "--confidence", bad]) == 2
        assert "between 0 and 1" in capsys.readouterr().err


def test_compare_cli_markdown_json_plot(tmp_path, capsys):
    runs = _write_runs(tmp_path / "runs")
    out = tmp_path / "cmp.json"
    assert (
        main(["compare", str(runs), "--json", str(out), "--plot", str(tmp_path / "cmp.png"), "--baseline", "text_only"])
        == 0
    )
    text = capsys.readouterr().out
    assert "| all_four | 3 |" in text and "(baseline)" in text and "lower is better" in text
    assert "* better" in text  # all_four's pose error interval excludes zero, in the good direction
    doc = json.loads(out.read_text())
    assert set(doc) == {"baseline", "arms", "diff"} and (tmp_path / "cmp.png").stat().st_size > 1000
    assert main(["compare", str(runs), "--baseline", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert main(["compare", str(runs), "--by", "no.such.key"]) == 2


def _tiny_folder(root: Path) -> Path:
    """Two arms of the tiny README student: text-only and all four objectives, a few steps."""
    base = (REPO / "recipes" / "tiny_synthetic.toml").read_text()
    folder = root / "arms"
    folder.mkdir()
    tiny = base.replace('pretrained = "geovr-tiny-small"', 'pretrained = "geovr-tiny"')
    (folder / "all_four.toml").write_text(tiny)
    head, _, rest = tiny.partition("[[objectives]]")
    tail = rest[rest.index("[data.train]") :]
    (folder / "text_only.toml").write_text(head + tail)
    (folder / "ablation.toml").write_text('baseline = "text_only"\nseeds = 2\n')
    return folder


@pytest.mark.slow
def test_ablate_runs_resumes_and_compares(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEOVR_CACHE_DIR", str(tmp_path / "cache"))
    folder = _tiny_folder(tmp_path)
    out = tmp_path / "runs"
    small = [
        "trainer.max_steps=2",
        "data.train.num_samples=4",
        "data.train.num_frames=2",
        "data.train.image_size=[56,56]",
        "evaluators.0.dataset_options.num_samples=4",
        "evaluators.0.dataset_options.num_frames=2",
        "evaluators.0.dataset_options.image_size=[56,56]",
        "evaluators.1.num_samples=4",
        "evaluators.1.dataset_options.num_frames=2",
        "evaluators.1.dataset_options.image_size=[56,56]",
        "backbone.max_new_tokens=2",
    ]
    args = [
        "ablate",
        str(folder),
        "--output",
        str(out),
        "--jobs",
        "2",
        "--no-progress",
        "--json",
        str(tmp_path / "c.json"),
        "--report",
        str(tmp_path / "results.md"),
        *small,
    ]
    (tmp_path / "results.md").write_text(
        "old table\n<!-- notes: kept when this file is regenerated -->\n## Findings\nhand-written\n"
    )
    assert main(args) == 0, capsys.readouterr().err
    for arm in ("text_only", "all_four"):
        for seed in (0, 1):
            res = json.loads((out / arm / f"seed-{seed}" / RESULT_FILE).read_text())
            assert res["arm"] == arm and res["seed"] == seed
            assert {"qa_overall", "depth_absrel", "depth_absrel_constant", "depth_absrel_control"} <= set(
                res["metrics"]
            )
            assert all(math.isfinite(v) for v in res["metrics"].values())
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["baseline"] == "text_only" and doc["arms"]["all_four"]["qa_overall"]["n"] == 2
    assert set(doc["diff"]) == {"all_four"}
    report = (tmp_path / "results.md").read_text()
    assert "Regenerate with: `geovr ablate" in report and "commit:" in report and "seeds: 0, 1" in report
    assert "old table" not in report and report.endswith("## Findings\nhand-written\n")
    assert report.index("Regenerate with") < report.index("<!-- notes:")
    assert (tmp_path / "results.png").stat().st_size > 1000 and (out / "comparison.png").is_file()
    capsys.readouterr()
    # resume: everything is done, nothing is re-run (a failing child would show: no python is started)
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob(RESULT_FILE)}
    monkeypatch.setattr("geovr.cli.ablate.execute", lambda *a, **k: pytest.fail("re-ran a finished run"))
    assert main(args) == 0
    assert "4 already done" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob(RESULT_FILE)} == stamp


def test_ablate_reports_every_bad_recipe_at_once(tmp_path, capsys):
    folder = tmp_path / "arms"
    folder.mkdir()
    (folder / "a.toml").write_text('schema = 1\nname = "a"\n[backbone]\ncomponent = "nope"\n')
    (folder / "b.toml").write_text('schema = 1\nname = "b"\n[trainer]\ncomponent = "accelerate"\nlr = "x"\n')
    assert main(["ablate", str(folder), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "a.toml" in err and "b.toml" in err
    (folder / "ablation.toml").write_text("seedz = 3\n")
    assert main(["ablate", str(folder), "--dry-run"]) == 2
    assert "unknown key 'seedz'" in capsys.readouterr().err
    assert main(["ablate", str(tmp_path / "none")]) == 2


def test_quick_runs_its_arms_in_its_own_folder(tmp_path, capsys):
    folder = _tiny_folder(tmp_path)
    (folder / "depth.toml").write_text((folder / "all_four.toml").read_text())
    full = (tmp_path / "full").as_posix()
    (folder / "ablation.toml").write_text(
        f'output_dir = "{full}"\nseeds = 3\n[quick]\nseeds = 2\narms = ["text_only", "all_four"]\n'
    )
    assert main(["ablate", str(folder), "--quick", "--dry-run"]) == 0
    quick = capsys.readouterr()
    assert main(["ablate", str(folder), "--dry-run"]) == 0
    full = capsys.readouterr()
    q, f = quick.out + quick.err, full.out + full.err
    assert "4 runs (2 arms x 2 seeds)" in q and str(tmp_path / "full-quick") in q and "depth" not in q
    assert "9 runs (3 arms x 3 seeds)" in f and str(tmp_path / "full-quick") not in f
    (folder / "ablation.toml").write_text('[quick]\narms = ["text_only", "nope"]\n')
    assert main(["ablate", str(folder), "--quick", "--dry-run"]) == 2
    assert "quick.arms nope: not in" in capsys.readouterr().err
    (folder / "ablation.toml").write_text('[quick]\narms = "all_four"\n')
    assert main(["ablate", str(folder), "--quick", "--dry-run"]) == 2
    assert "quick.arms must be a list" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["ablate", "compare"])
def test_help_has_examples(verb, capsys):
    assert main([verb, "--help"]) == 0
    assert f"geovr {verb} " in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert verb in capsys.readouterr().out
