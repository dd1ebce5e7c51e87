"""Built-in plugin of geovr.eval: the evaluators, the ``evaluate`` training callback and the
``geovr eval`` verb (torch-free at import)."""

from __future__ import annotations

from geovr.eval.configs import EvaluateCallbackConfig, GeometryProbeConfig, SyntheticQAConfig, VSIBenchConfig
from geovr.hookspecs import hookimpl


@hookimpl
def register_evaluators(register):
    """``vsibench``, ``synthetic_qa`` and ``geometry_probe`` (factories imported lazily)."""
    register(
        "vsibench",
        "geovr.eval.evaluators:build_vsibench",
        config=VSIBenchConfig,
        summary="VSI-Bench from a local directory, lmms-eval or geovr protocol",
    )
    register(
        "synthetic_qa",
        "geovr.eval.evaluators:build_synthetic_qa",
        config=SyntheticQAConfig,
        summary="VSI-format questions on held-out synthetic scenes (no download)",
    )
    register(
        "geometry_probe",
        "geovr.eval.probe:build_geometry_probe",
        config=GeometryProbeConfig,
        summary="linear probes of depth / relative rotation from the frozen student's hidden states",
    )


@hookimpl
def register_callbacks(register):
    """``evaluate``: run the recipe's evaluators every N steps and at the end of training."""
    register(
        "evaluate",
        "geovr.eval.callback:build_evaluate_callback",
        config=EvaluateCallbackConfig,
        summary="run the recipe's [[evaluators]] every N steps and when training ends",
    )


@hookimpl
def register_commands(subparsers):
    """Add ``geovr eval``."""
    from geovr.eval.cli import add_parser

    add_parser(subparsers)
