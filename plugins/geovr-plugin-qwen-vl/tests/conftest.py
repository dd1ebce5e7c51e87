"""Shared fixtures of the Qwen-VL plugin tests: tiny checkpoints written once per session."""

import pytest
import torch

from geovr_plugin_qwen_vl.testing import cached_tiny_checkpoint, tiny_backbone
from geovr_plugin_qwen_vl.tiny_models import KINDS


@pytest.fixture(scope="session", params=KINDS)
def kind(request):
    """Both backbone kinds."""
    return request.param


@pytest.fixture(scope="session")
def ckpt_dir(kind):
    """Directory of a tiny random-init checkpoint (model + processor) of ``kind``."""
    return cached_tiny_checkpoint(kind)


@pytest.fixture()
def backbone(kind, ckpt_dir):
    """A fresh tiny backbone (float32, CPU, default options: vision frozen)."""
    torch.manual_seed(0)
    return tiny_backbone(kind, pretrained=ckpt_dir)
