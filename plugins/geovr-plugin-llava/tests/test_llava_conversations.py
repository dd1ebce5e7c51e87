"""Multi-turn conversations (``Batch.conversations``, from ``video_conversations`` data written by the real
writers): every assistant turn is labelled, every other token is masked, on the tiny LLaVA-OneVision."""

from __future__ import annotations

import torch

from geovr.testing.conversations import labelled_runs, tiny_conversation_batch


def test_labels_on_every_assistant_turn_and_nowhere_else(llava_backbone, tmp_path_factory):
    batch = tiny_conversation_batch(tmp_path_factory.getbasetemp() / "conv_llava", image_size=(48, 56))
    inputs = llava_backbone.prepare(batch)
    tok = llava_backbone.processor.tokenizer
    for b, turns in enumerate(batch.conversations):
        lab, ids = inputs["labels"][b], inputs["input_ids"][b]
        keep = lab != -100
        assert torch.equal(lab[keep], ids[keep])
        answers = [t["text"] for t in turns if t["role"] == "assistant"]
        assert [tok.decode(r) for r in labelled_runs(lab)] == [a + "<|im_end|>\n" for a in answers]
        text = tok.decode(ids[inputs["attention_mask"][b].bool()])
        assert text.count("<|im_start|>user") == len(turns) // 2
        for t in turns:
            assert t["text"] in text
    prompt = llava_backbone.prepare(batch, with_answers=False)
    lengths = prompt["attention_mask"].sum(1)
    last = tok.decode(prompt["input_ids"][0, -int(lengths[0]) :])
    assert last.endswith("<|im_start|>assistant\n") and batch.conversations[0][2]["text"] in last
