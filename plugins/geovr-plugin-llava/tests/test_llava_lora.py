"""LoRA on the tiny llava_onevision backbone: what trains, and the merged export."""

from __future__ import annotations

import torch

from geovr.protocols import BuildContext, GeometryRequest
from geovr.testing.contracts import check_backbone
from geovr_plugin_llava.backbone import build
from geovr_plugin_llava.testing import tiny_batch


def test_lora_trains_only_adapters_and_geometry_tokens(llava_config, tmp_path):
    from transformers import LlavaOnevisionForConditionalGeneration

    bb = build(
        llava_config(lora={"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]}),
        BuildContext(seed=0),
    )
    trainable = {n for n, p in bb.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if "lora_" in n} | {"camera_embed.weight", "scale_embed.weight"}
    assert all(".language_model." in n for n in trainable if "lora_" in n)
    # 2 layers × (q_proj, v_proj, down_proj) × (A, B)
    assert len([n for n in trainable if "lora_" in n]) == 12
    groups = bb.parameter_groups()
    assert {id(p) for p in groups["new"]} == {id(bb.camera_embed.weight), id(bb.scale_embed.weight)}
    assert {id(p) for p in groups["base"]} == {id(p) for n, p in bb.named_parameters() if "lora_" in n}

    batch = tiny_batch(batch_size=2, num_frames=2)
    check_backbone(bb, batch, layers=(1,), frozen_prefixes=("vision_tower", "base_layer", "embed_tokens", "lm_head"))

    before = {n: p.detach().clone() for n, p in bb.named_parameters()}
    opt = torch.optim.SGD([*groups["base"], *groups["new"]], lr=0.5)
    inputs = bb.prepare(batch)
    out = bb(inputs, geometry=GeometryRequest(layers=(2,), camera_tokens=True, scale_token=True))
    (out.lm_loss + out.hidden[2].pow(2).mean() + out.camera.pow(2).mean() + out.scale.pow(2).mean()).backward()
    opt.step()
    changed = {n for n, p in bb.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= trainable
    assert "camera_embed.weight" in changed and "scale_embed.weight" in changed
    assert any("lora_B" in n for n in changed)

    # export: LoRA merged into a plain transformers model with the same outputs
    bb.save_pretrained(str(tmp_path / "merged"))
    plain = LlavaOnevisionForConditionalGeneration.from_pretrained(str(tmp_path / "merged"), dtype=torch.float32)
    assert not any("lora" in n for n, _ in plain.named_parameters())
    hf = {k: v for k, v in inputs.items() if not k.startswith("_")}
    with torch.no_grad():
        ours = bb(inputs, geometry=GeometryRequest()).logits
        theirs = plain(**hf).logits
    diff = float((ours - theirs).abs().max())
    assert diff < 1e-5, f"merged export differs from the LoRA model by {diff}"
    assert any("lora_" in n for n, _ in bb.named_parameters())  # the live model keeps its adapters
