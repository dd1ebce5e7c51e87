"""Recipe options of the toy objective (torch-free: imported when recipes are validated)."""

from __future__ import annotations

import attrs


@attrs.define
class FrameDepthMeanConfig:
    """``[[objectives]] component = "frame_depth_mean"`` options."""

    weight: float = 0.1
    hidden: int = 64

    def requires(self) -> frozenset[str]:
        """Teacher outputs this objective reads (checked against the recipe's teacher)."""
        return frozenset({"depth"})

    def check(self) -> list[str]:
        """Cross-field rules; each returned string is reported as a recipe problem."""
        return [] if self.hidden > 0 else [f"hidden must be > 0, got {self.hidden}"]
