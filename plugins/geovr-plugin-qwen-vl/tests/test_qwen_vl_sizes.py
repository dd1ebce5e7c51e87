"""``pretrained = "geovr-tiny-small"``: a larger random-initialised Qwen-VL with a BPE vocabulary learned
offline from the synthetic questions (prompts ~4x shorter than byte-level)."""

from __future__ import annotations

import pytest

from geovr_plugin_qwen_vl.loading import tiny_size
from geovr_plugin_qwen_vl.tiny_models import SIZES, tiny_model_config, tiny_tokenizer, trained_tokenizer


def test_size_ids():
    assert tiny_size("geovr-tiny") == "tiny" and tiny_size("geovr-tiny-small") == "small"
    assert tiny_size("geovr-tiny-huge") is None and tiny_size("Qwen/Qwen2.5-VL-3B-Instruct") is None
    with pytest.raises(ValueError, match="unknown tiny model size"):
        tiny_model_config("qwen2_5_vl", size="huge")


@pytest.mark.parametrize("kind", ["qwen2_5_vl", "qwen3_vl"])
def test_small_config(kind):
    tok = trained_tokenizer()
    cfg = tiny_model_config(kind, tok, size="small")
    text = cfg.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (128, 4, 4)
    assert cfg.vision_config.out_hidden_size == 128 and text.vocab_size == len(tok)
    assert sum(text.rope_parameters["mrope_section"]) == 128 // 4 // 2
    assert SIZES["tiny"]["hidden"] == tiny_model_config(kind).text_config.hidden_size == 32


def test_trained_tokenizer_is_deterministic_shorter_and_keeps_digits():
    from geovr.eval.prompts import build_prompt

    a, b = trained_tokenizer(), trained_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    q = build_prompt(
        "Which of these objects is closest to the table (closest points): chair, lamp, bed, sofa?",
        ["A. chair", "B. lamp", "C. bed", "D. sofa"],
        protocol="lmms-eval",
    )
    n_bpe, n_bytes = len(a(q)["input_ids"]), len(tiny_tokenizer()(q)["input_ids"])
    assert n_bpe * 3 < n_bytes
    assert a.convert_ids_to_tokens(a("137.2")["input_ids"]) == ["1", "3", "7", ".", "2"]
    assert a.decode(a(q)["input_ids"]) == q
    for special in ("<|im_end|>", "<|video_pad|>", "<|vision_start|>"):
        assert len(a(special, add_special_tokens=False)["input_ids"]) == 1
