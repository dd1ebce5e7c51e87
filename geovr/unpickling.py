"""Whether checkpoint loaders may fully unpickle a file (torch-free).

Full unpickling (``torch.load(weights_only=False)``) runs whatever code the file names, so it is
never the default and a recipe cannot turn it on: a shared or downloaded recipe would otherwise be
enough to run code from a checkpoint it points at. The person running geovr opts in for one command
with ``geovr run --allow-pickle`` or for a shell with ``GEOVR_ALLOW_PICKLE=1``. Loaders ask
:func:`pickle_allowed`; recipe validation rejects an ``allow_pickle = true`` option with
:data:`RECIPE_REFUSAL`.
"""

from __future__ import annotations

import os

ENV = "GEOVR_ALLOW_PICKLE"
#: the recipe option name that used to enable unpickling (any component)
OPTION = "allow_pickle"
RECIPE_REFUSAL = (
    "a recipe cannot enable full unpickling of checkpoints (it runs code from the file); for a "
    f"checkpoint you trust pass `geovr run --allow-pickle` or set {ENV}=1, and remove {OPTION} from "
    "the recipe (or convert the checkpoint to safetensors once)"
)
#: how to opt in, for loader error messages
HOW_TO_OPT_IN = f"for a checkpoint you trust run `geovr run --allow-pickle` (or set {ENV}=1)"


def pickle_allowed() -> bool:
    """True when ``GEOVR_ALLOW_PICKLE`` is set to 1/true/yes/on (``--allow-pickle`` sets it)."""
    return os.environ.get(ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def allow_pickle() -> None:
    """Opt in for this process and the processes it starts (``--allow-pickle``)."""
    os.environ[ENV] = "1"
