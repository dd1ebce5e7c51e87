"""``evaluate`` callback: run the recipe's ``[[evaluators]]`` during and after training.

With ``every = N`` the evaluators run after every N optimizer steps, and (``at_end``) when training
ends, each time into ``RUN_DIR/eval/step-<step>/`` (where ``geovr eval RUN_DIR`` writes for that
checkpoint). Every run appends ``{"step", "<evaluator>/<key>": value, ...}`` to
``RUN_DIR/eval/summary.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from geovr.eval.report import append_jsonl

if TYPE_CHECKING:
    from geovr.protocols import BuildContext


class EvaluateCallback:
    """Runs every evaluator the build context holds on the context's backbone."""

    def __init__(self, config, context: BuildContext):
        self.config = config
        self.context = context
        self.last_step = -1

    def _run(self, state, output_dir: Path) -> dict[str, float]:
        evaluators = list(self.context.evaluators)
        names = [c.component for c in getattr(self.context.recipe, "evaluators", [])] or [
            getattr(e, "name", type(e).__name__) for e in evaluators
        ]
        row: dict[str, float] = {}
        for name, evaluator in zip(names, evaluators, strict=False):
            for key, value in evaluator.evaluate(self.context.backbone, output_dir).items():
                row[f"{name}/{key}"] = value
        if state.accelerator is None or state.accelerator.is_main_process:
            summary = Path(state.run_dir) / "eval" / "summary.jsonl"
            summary.parent.mkdir(parents=True, exist_ok=True)
            append_jsonl(summary, [{"step": state.step, **row}])
        self.last_step = state.step
        return row

    def on_step_end(self, state) -> None:
        """Every ``every`` steps: evaluate into ``RUN_DIR/eval/step-<step>``."""
        every = self.config.every
        if every > 0 and state.step % every == 0 and state.step < state.max_steps:
            self._run(state, self.output_dir(state))

    def on_train_end(self, state) -> None:
        """At the end (unless ``at_end`` is off, or this step was just evaluated)."""
        if self.config.at_end and self.last_step != state.step:
            self._run(state, self.output_dir(state))

    @staticmethod
    def output_dir(state) -> Path:
        """``RUN_DIR/eval/step-<step, 8 digits>`` (the checkpoint directory name of that step)."""
        return Path(state.run_dir) / "eval" / f"step-{state.step:08d}"


def build_evaluate_callback(config, context: BuildContext) -> EvaluateCallback:
    """Factory of the ``evaluate`` callback."""
    return EvaluateCallback(config, context)
