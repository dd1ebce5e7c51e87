"""Qwen-VL backbone: LoRA training scope, adapter round trip, plain-transformers export."""

import torch

from geovr.protocols import GeometryRequest
from geovr_plugin_qwen_vl.loading import model_class
from geovr_plugin_qwen_vl.testing import tiny_backbone, tiny_batch

FULL = GeometryRequest(layers=(1, 2), camera_tokens=True, scale_token=True)
LORA = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def _train_step(backbone, inputs, lr=0.5):
    """One SGD step on lm_loss + geometry terms (so LoRA B matrices and new tokens move off init)."""
    out = backbone(inputs, geometry=FULL)
    loss = out.lm_loss + out.camera.pow(2).mean() + out.scale.pow(2).mean() + out.hidden[1].pow(2).mean()
    loss.backward()
    params = [p for g in backbone.parameter_groups().values() for p in g]
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
    backbone.zero_grad(set_to_none=True)


def _plain(inputs):
    return {k: v for k, v in inputs.items() if not k.startswith("_")}


def test_lora_trains_only_adapters_and_new_tokens(kind, ckpt_dir, tmp_path):
    torch.manual_seed(0)
    bb = tiny_backbone(kind, pretrained=ckpt_dir, lora=LORA, freeze=[])
    groups = bb.parameter_groups()
    names = {id(p): n for n, p in bb.named_parameters()}
    base_names = [names[id(p)] for p in groups["base"]]
    assert base_names and all("lora_A" in n or "lora_B" in n for n in base_names)
    assert all(".language_model.layers." in n and (".q_proj." in n or ".v_proj." in n) for n in base_names)
    assert len(base_names) == 2 * 2 * 2  # 2 layers x {q,v} x {A,B}
    assert {names[id(p)] for p in groups["new"]} == {"camera_tokens.weight", "scale_token.weight"}
    trainable = {n for n, p in bb.named_parameters() if p.requires_grad}
    assert trainable == set(base_names) | {"camera_tokens.weight", "scale_token.weight"}

    inputs = bb.prepare(tiny_batch(2, 2))
    before = {n: p.detach().clone() for n, p in bb.named_parameters()}
    _train_step(bb, inputs)
    changed = {n for n, p in bb.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
    assert any("lora_B" in n for n in changed)

    bb.eval()
    with torch.no_grad():
        ref = bb(inputs, geometry=FULL)
        ref_plain = bb(inputs, geometry=GeometryRequest())
    bb.save_adapter(str(tmp_path / "adapter"))
    again = tiny_backbone(kind, pretrained=ckpt_dir, adapter=str(tmp_path / "adapter"), freeze=[]).eval()
    with torch.no_grad():
        out = again(inputs, geometry=FULL)
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0)
    torch.testing.assert_close(out.camera, ref.camera, rtol=0, atol=0)
    torch.testing.assert_close(out.scale, ref.scale, rtol=0, atol=0)
    torch.testing.assert_close(out.hidden[2], ref.hidden[2], rtol=0, atol=0)

    # export: LoRA merged into a plain transformers directory without geometry tokens
    bb.save_pretrained(str(tmp_path / "merged"))
    from transformers import AutoProcessor

    plain = model_class(kind).from_pretrained(str(tmp_path / "merged")).eval()
    assert not any("lora" in n for n, _ in plain.named_parameters())
    assert type(AutoProcessor.from_pretrained(str(tmp_path / "merged"))) is type(bb.processor)
    with torch.no_grad():
        merged = plain(**_plain(inputs)).logits
    torch.testing.assert_close(merged, ref_plain.logits, rtol=0, atol=1e-5)
    # the in-memory adapter is intact after export (merge was undone)
    with torch.no_grad():
        torch.testing.assert_close(bb(inputs, geometry=FULL).logits, ref.logits, rtol=0, atol=1e-6)


def test_save_pretrained_without_lora_equals_plain_forward(backbone, tmp_path):
    inputs = backbone.prepare(tiny_batch(2, 2))
    _train_step(backbone, inputs, lr=0.1)
    backbone.eval()
    backbone.save_pretrained(str(tmp_path))
    plain = model_class(backbone.kind).from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        expect = backbone(inputs, geometry=GeometryRequest()).logits
        got = plain(**_plain(inputs)).logits
    torch.testing.assert_close(got, expect, rtol=0, atol=0)
    assert "camera_tokens" not in str(list(plain.state_dict()))
    # full fine-tune round trip: exported model as `pretrained` + geometry tokens as `adapter`
    backbone.save_adapter(str(tmp_path / "geometry"))
    assert not (tmp_path / "geometry" / "adapter_config.json").exists()
    again = tiny_backbone(backbone.kind, pretrained=str(tmp_path), adapter=str(tmp_path / "geometry")).eval()
    with torch.no_grad():
        ref, out = backbone(inputs, geometry=FULL), again(inputs, geometry=FULL)
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0)
    torch.testing.assert_close(out.camera, ref.camera, rtol=0, atol=0)
    torch.testing.assert_close(out.scale, ref.scale, rtol=0, atol=0)
