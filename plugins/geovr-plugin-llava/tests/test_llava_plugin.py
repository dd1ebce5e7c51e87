"""Registration, recipe options and loading errors of the llava_onevision backbone."""

from __future__ import annotations

import warnings

import pytest

from geovr.errors import CheckpointError, RecipeError


def test_registered_through_the_entry_point_and_builds(llava_dir):
    from geovr.plugins import PluginHost

    host = PluginHost().load()
    spec = host.registry.get("backbone", "llava_onevision")
    assert spec.distribution == "geovr-plugin-llava"
    assert spec.factory == "geovr_plugin_llava.backbone:build"
    backbone = spec.build({"pretrained": llava_dir, "dtype": "float32"})
    assert backbone.hidden_size == 32 and backbone.num_layers == 2
    assert not any(p.requires_grad for p in backbone.model.model.vision_tower.parameters())  # default freeze


def _spec():
    from geovr.plugins import PluginHost

    return PluginHost().load().registry.get("backbone", "llava_onevision")


@pytest.mark.parametrize(
    "table,needle",
    [
        ({"pretrianed": "x"}, "did you mean 'pretrained'"),
        ({"freeze": ["vision", "eyes"]}, "freeze: unknown part 'eyes'"),
        ({"lora": {"rank": 4, "alpah": 8}}, "lora.alpah: unknown key"),
        ({"lora": {"rank": "4"}}, "lora.rank: wrong type str"),
        ({"dtype": "float64"}, "dtype"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_options_are_recipe_errors(table, needle):
    with pytest.raises(RecipeError) as err:
        _spec().parse_config(table)
    assert needle in str(err.value)


def test_lora_defaults():
    cfg = _spec().parse_config({"lora": {"rank": 2}})
    assert cfg.lora_options() == {
        "rank": 2,
        "alpha": 16.0,
        "dropout": 0.0,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    }


def test_offline_missing_hub_id_names_the_id(monkeypatch):
    from geovr_plugin_llava.loading import resolve_pretrained

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"'nobody-xyz/llava-none' is not in the local HF cache"):
        resolve_pretrained("nobody-xyz/llava-none")


def test_missing_local_directory_is_a_checkpoint_error(tmp_path):
    from geovr_plugin_llava.loading import resolve_pretrained

    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_pretrained(str(tmp_path / "nope"))


def test_wrong_model_type_is_a_checkpoint_error(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from geovr_plugin_llava.loading import load

    Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=16,
            hidden_size=8,
            intermediate_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    ).save_pretrained(str(tmp_path))
    with pytest.raises(CheckpointError, match="holds a 'qwen2' model"):
        load(str(tmp_path), dtype="float32", attn_implementation="sdpa")


def test_flash_attention_falls_back_loudly(monkeypatch):
    import importlib.util

    from geovr_plugin_llava import loading

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.warns(RuntimeWarning, match="falling back to 'sdpa'"):
        assert loading.attention_kernel("flash_attention_2") == "sdpa"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loading.attention_kernel("eager") == "eager"


def test_freeze_parts(llava_dir):
    from geovr_plugin_llava.testing import tiny_backbone

    bb = tiny_backbone(llava_dir, freeze=["vision", "projector", "embeddings", "llm"])
    assert not any(p.requires_grad for p in bb.model.parameters())
    assert bb.parameter_groups()["base"] == [] and len(bb.parameter_groups()["new"]) == 2
    bb = tiny_backbone(llava_dir, freeze=["embeddings"])
    trainable = {n for n, p in bb.model.named_parameters() if p.requires_grad}
    assert "model.language_model.embed_tokens.weight" not in trainable
    assert {"lm_head.weight", "model.image_newline", "model.vision_tower.post_layernorm.weight"} <= trainable
