"""Built-in plugin of geovr.eval: registers its components through the public hooks (torch-free)."""

from __future__ import annotations

from geovr import hookimpl  # noqa: F401
