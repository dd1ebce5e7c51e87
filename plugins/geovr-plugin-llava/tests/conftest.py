"""Session fixtures of the LLaVA-OneVision plugin tests: one tiny checkpoint directory per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory) -> str:
    """A tiny random LLaVA-OneVision checkpoint + processor written with ``save_pretrained``."""
    from geovr_plugin_llava.testing import save_tiny_checkpoint

    return save_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny_llava")))


@pytest.fixture(scope="session")
def llava_config(llava_dir):
    """Factory of recipe configs pointing at the tiny checkpoint (float32 for exact CPU numbers)."""
    from geovr_plugin_llava.config import LlavaOneVisionConfig

    def make(**overrides):
        options = {"pretrained": llava_dir, "dtype": "float32", "freeze": ["vision"]}
        options.update(overrides)
        return LlavaOneVisionConfig(**options)

    return make


@pytest.fixture(scope="session")
def llava_backbone(llava_config):
    """The tiny backbone built through the registered factory's code path (vision frozen)."""
    from geovr.protocols import BuildContext
    from geovr_plugin_llava.backbone import build

    return build(llava_config(), BuildContext(seed=0))
