"""Multi-turn conversations (``Batch.conversations``, from ``video_conversations`` data written by the real
writers): every assistant turn is labelled, every other token is masked, on the tiny Qwen-VL models."""

from __future__ import annotations

import torch

from geovr.protocols import GeometryRequest
from geovr.testing.conversations import labelled_runs, tiny_conversation_batch


def test_labels_on_every_assistant_turn_and_nowhere_else(backbone, tmp_path_factory):
    batch = tiny_conversation_batch(tmp_path_factory.getbasetemp() / "conv_qwen")
    inputs = backbone.prepare(batch)
    tok = backbone.processor.tokenizer
    for b, turns in enumerate(batch.conversations):
        lab, ids = inputs["labels"][b], inputs["input_ids"][b]
        keep = lab != -100
        assert torch.equal(lab[keep], ids[keep])
        answers = [t["text"] for t in turns if t["role"] == "assistant"]
        assert [tok.decode(r) for r in labelled_runs(lab)] == [a + "<|im_end|>" for a in answers]
        text = tok.decode(ids[inputs["attention_mask"][b].bool()])
        for t in turns:  # every turn rendered, in order
            assert text.count(t["text"]) >= 1
        assert text.count("<|im_start|>user") == len(turns) // 2
        assert text.rfind("<|vision_end|>") < text.find("<|im_start|>assistant")  # video: first user turn only
    assert len(labelled_runs(inputs["labels"][0])) == 2
    out = backbone(inputs, geometry=GeometryRequest())
    assert torch.isfinite(out.lm_loss)
    # generation prompt: every turn up to the last user turn, ending with the assistant header
    prompt = backbone.prepare(batch, with_answers=False)
    last = tok.decode(prompt["input_ids"][0])
    assert last.endswith("<|im_start|>assistant\n") and batch.conversations[0][1]["text"] in last
    assert batch.conversations[0][3]["text"] + "<|im_end|>" not in last
