"""Evaluation: VSI-Bench under both published protocols, a synthetic QA benchmark, geometry probes.

Modules (all torch-free at import):

* :mod:`geovr.eval.metrics` — answer parsing and mean relative accuracy per protocol;
* :mod:`geovr.eval.prompts` — the exact prompt text per protocol (frozen by ``tests/snapshots/``);
* :mod:`geovr.eval.vsibench` — record format, :func:`~geovr.eval.vsibench.score`, loading the test set;
* :mod:`geovr.eval.qa` — the answer/score/report loop (resumable, sharded through accelerate);
* :mod:`geovr.eval.evaluators` — the ``vsibench`` and ``synthetic_qa`` evaluators;
* :mod:`geovr.eval.probe` — the ``geometry_probe`` evaluator (linear depth / rotation probes);
* :mod:`geovr.eval.callback` — the ``evaluate`` training callback (evaluators every N steps / at the end);
* :mod:`geovr.eval.report` — JSONL, markdown/JSON tables and bar charts;
* :mod:`geovr.eval.video` — uniform frame sampling with PyAV;
* :mod:`geovr.eval.configs` — recipe options; :mod:`geovr.eval.cli` — the ``geovr eval`` verb.
"""
