"""Qwen-VL backbone: contract, geometry-token layout, grid extraction and HF parity on tiny models."""

import pytest
import torch

from geovr.protocols import GeometryRequest
from geovr.testing.contracts import check_backbone
from geovr_plugin_qwen_vl.backbone import CAMERA_ID, SCALE_ID
from geovr_plugin_qwen_vl.testing import tiny_batch

FULL = GeometryRequest(layers=(0, 1, 2), camera_tokens=True, scale_token=True)
VISION_PREFIXES = ("visual.blocks", "visual.patch_embed", "visual.pos_embed")


def _hf_inputs(inputs):
    return {k: v for k, v in inputs.items() if not k.startswith("_")}


def test_contract(backbone):
    out = check_backbone(backbone, tiny_batch(2, 2), layers=(0, 1, 2), frozen_prefixes=VISION_PREFIXES)
    assert backbone.num_layers == 2 and backbone.hidden_size == 32
    assert out.hidden[1].shape == (2, 2, 2, 2, 32)  # 56x56 frames -> 2x2 merged tokens per frame


def test_labels_cover_only_the_answer(backbone):
    batch = tiny_batch(2, 2)
    inputs = backbone.prepare(batch)
    tok = backbone.processor.tokenizer
    for b, answer in enumerate(batch.answers):
        lab = inputs["labels"][b]
        kept = lab[lab != -100].tolist()
        assert tok.decode(kept) == answer + "<|im_end|>"
        ids = inputs["input_ids"][b][lab != -100]
        assert torch.equal(ids, lab[lab != -100])
    # multiple-choice options are listed after the question, one per line
    text = tok.decode(inputs["input_ids"][0])
    assert "closest to the camera?\nA. chair\nB. table\nC. lamp<|im_end|>" in text
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")


@pytest.mark.parametrize("S", [1, 2, 5])
def test_camera_tokens_one_per_frame(backbone, S):
    batch = tiny_batch(2, S, seed=S)
    inputs = backbone.prepare(batch)
    _, h, w = inputs["_grid"]
    assert inputs["_grid"][0] == S and inputs["video_grid_thw"][:, 0].tolist() == [S, S]
    layout = backbone.geometry_layout(inputs, FULL)
    tok = backbone.processor.tokenizer
    for b in range(2):
        ids = layout["input_ids"][b].tolist()
        names = [
            "<CAM>" if i == CAMERA_ID else "<SCALE>" if i == SCALE_ID else tok.convert_ids_to_tokens(i) for i in ids
        ]
        cams = [i for i, n in enumerate(names) if n == "<CAM>"]
        assert len(cams) == S and names.count("<SCALE>") == 1
        assert layout["camera_index"][b].tolist() == cams
        for c in cams:  # exactly one frame (h*w video tokens) right before each camera token
            assert names[c - h * w : c] == ["<|video_pad|>"] * (h * w)
            assert names[c - h * w - 1] != "<|video_pad|>"
        n_video = names.count("<|video_pad|>")
        assert n_video == S * h * w
        assert names[cams[-1] + 1] == "<SCALE>" and names[cams[-1] + 2] == "<|vision_end|>"
        assert layout["kind"][b, cams].tolist() == [1] + [2] * (S - 1)
        # with the tokens removed, the original sequence is recovered
        orig = [i for i in ids if i >= 0]
        assert orig == inputs["input_ids"][b].tolist()
    out = backbone(inputs, geometry=FULL)
    assert out.camera.shape == (2, S, 32) and out.scale.shape == (2, 32)
    assert out.logits.shape[1] == inputs["input_ids"].shape[1] + S + 1


def test_rope_positions_of_inserted_tokens(backbone):
    inputs = backbone.prepare(tiny_batch(1, 3))
    _, h, w = inputs["_grid"]
    layout = backbone.geometry_layout(inputs, FULL)
    hf_pos, _ = backbone.hf.model.get_rope_index(
        inputs["input_ids"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        attention_mask=inputs["attention_mask"],
        **({"second_per_grid_ts": inputs["second_per_grid_ts"]} if "second_per_grid_ts" in inputs else {}),
    )
    pos, src = layout["position_ids"][:, 0], layout["src"][0]
    scale_at = int(layout["scale_index"][0])
    orig = src >= 0
    expect = hf_pos[:, 0, src[orig]] + (torch.arange(len(src))[orig] > scale_at).long()
    assert torch.equal(pos[:, orig], expect)  # original tokens: HF positions, +1 after the scale token
    video = (inputs["input_ids"][0] == backbone.video_token_id).nonzero().flatten()
    vis = hf_pos[:, 0, video].view(3, 3, h * w)
    for f, c in enumerate(layout["camera_index"][0].tolist()):
        t, hh, ww = vis[:, f].max(-1).values.tolist()
        assert pos[:, c].tolist() == [t, hh + 1, ww + 1]
    m = int(vis.max()) + 1
    assert pos[:, scale_at].tolist() == [m, m, m]


def _independent_grid(hidden, input_ids, video_id, S, h, w):
    """Grid [S,h,w,D] of one sample from contiguous runs of video tokens, frame-major."""
    ids = input_ids.tolist()
    runs, i = [], 0
    while i < len(ids):
        if ids[i] == video_id:
            j = i
            while j < len(ids) and ids[j] == video_id:
                j += 1
            runs.append((i, j))
            i = j
        else:
            i += 1
    flat = [p for a, b in runs for p in range(a, b)]
    assert len(flat) == S * h * w
    out = torch.empty(S, h, w, hidden.shape[-1])
    for f in range(S):
        for r in range(h):
            for c in range(w):
                out[f, r, c] = hidden[flat[f * h * w + r * w + c]]
    return out


def test_grids_equal_hf_hidden_states(backbone):
    batch = tiny_batch(2, 3, size=84)
    inputs = backbone.prepare(batch)
    S, h, w = inputs["_grid"]
    with torch.no_grad():
        out = backbone(inputs, geometry=GeometryRequest(layers=(0, 1, 2)))
        ref = backbone.model(**_hf_inputs(inputs), output_hidden_states=True)
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0)
    for layer in (0, 1, 2):
        for b in range(2):
            expect = _independent_grid(
                ref.hidden_states[layer][b], inputs["input_ids"][b], backbone.video_token_id, S, h, w
            )
            torch.testing.assert_close(out.hidden[layer][b], expect, rtol=0, atol=0)


def test_token_path_matches_hf(backbone):
    """The embedding-level path used for geometry tokens reproduces HF exactly where it must:
    with nothing inserted everywhere, with tokens inserted up to the first inserted token."""
    inputs = backbone.prepare(tiny_batch(2, 3))
    with torch.no_grad():
        ref = backbone.model(**_hf_inputs(inputs), output_hidden_states=True)
        plain = backbone._forward_with_tokens(inputs, GeometryRequest(layers=(0, 1, 2)))
        full = backbone(inputs, geometry=FULL)
    torch.testing.assert_close(plain.logits, ref.logits, rtol=0, atol=0)
    torch.testing.assert_close(plain.lm_loss, ref.loss, rtol=0, atol=0)
    for layer in (0, 1, 2):
        grid = ref.hidden_states[layer][inputs["input_ids"] == backbone.video_token_id]
        torch.testing.assert_close(plain.hidden[layer].flatten(0, 3), grid, rtol=0, atol=0)
    S, h, w = inputs["_grid"]
    first = int(backbone.geometry_layout(inputs, FULL)["camera_index"].min())
    torch.testing.assert_close(full.logits[:, :first], ref.logits[:, :first], rtol=0, atol=1e-5)
    # frame 0 precedes every inserted token (causal attention): its grid is unchanged at every layer
    for layer in (0, 1, 2):
        torch.testing.assert_close(full.hidden[layer][:, 0], plain.hidden[layer][:, 0], rtol=0, atol=1e-5)
    # later frames attend to camera tokens, so deeper layers differ there; layer 0 (embeddings) does not
    torch.testing.assert_close(full.hidden[0], plain.hidden[0], rtol=0, atol=0)
    assert not torch.allclose(full.hidden[2][:, 1:], plain.hidden[2][:, 1:])


def test_forward_backward_four_frames_56px(backbone):
    batch = tiny_batch(1, 4, size=56)
    inputs = backbone.prepare(batch)
    out = backbone(inputs, geometry=FULL)
    assert out.camera.shape == (1, 4, 32) and out.hidden[2].shape == (1, 4, 2, 2, 32)
    loss = out.lm_loss + out.camera.pow(2).mean() + out.scale.pow(2).mean() + out.hidden[1].pow(2).mean()
    loss.backward()
    groups = backbone.parameter_groups()
    assert all(torch.isfinite(p.grad).all() for p in groups["base"] + groups["new"] if p.grad is not None)
    assert backbone.camera_tokens.weight.grad[0].abs().sum() > 0  # reference-frame token used
    assert backbone.camera_tokens.weight.grad[1].abs().sum() > 0  # other-frame token used


def test_generate_is_greedy_on_the_prompt(backbone):
    batch = tiny_batch(2, 2)
    texts = backbone.generate(batch, max_new_tokens=1)
    assert isinstance(texts, list) and len(texts) == 2 and all(isinstance(t, str) for t in texts)
    inputs = backbone.prepare(batch, with_answers=False)
    assert (inputs["attention_mask"][:, -1] == 1).all()  # left padding for generation
    with torch.no_grad():
        logits = backbone(inputs, geometry=GeometryRequest()).logits
    first = logits[:, -1].argmax(-1).tolist()
    tok = backbone.processor.tokenizer
    assert texts == [tok.decode([t], skip_special_tokens=True).strip() for t in first]
    longer = backbone.generate(batch, max_new_tokens=4)
    assert len(longer) == 2 and longer == backbone.generate(batch, max_new_tokens=4)  # greedy: deterministic


def test_qwen3_deepstack_zero_at_inserted_tokens(monkeypatch):
    from geovr_plugin_qwen_vl.testing import tiny_backbone

    bb = tiny_backbone("qwen3_vl")
    inputs = bb.prepare(tiny_batch(2, 3))
    lm = bb.hf.model.language_model
    original = lm._deepstack_process
    deltas = []

    def recording(hidden_states, visual_pos_masks, visual_embeds):
        before = hidden_states.detach().clone()
        out = original(hidden_states, visual_pos_masks, visual_embeds)
        deltas.append(out.detach() - before)
        return out

    monkeypatch.setattr(lm, "_deepstack_process", recording)
    with torch.no_grad():
        bb(inputs, geometry=FULL)
        feats = bb.hf.model.get_video_features(
            inputs["pixel_values_videos"], inputs["video_grid_thw"], return_dict=True
        ).deepstack_features
    layout = bb.geometry_layout(inputs, FULL)
    assert len(deltas) == len(feats) == 1
    inserted = layout["kind"] > 0
    visual = layout["input_ids"] == bb.video_token_id
    assert deltas[0][inserted].abs().max() == 0
    assert deltas[0][~visual].abs().max() == 0
    torch.testing.assert_close(deltas[0][visual], torch.cat(feats[0]), rtol=0, atol=1e-6)


def test_grid_layout_is_frame_row_column_major(backbone):
    """Merged token k of frame f must come from pixel block (k // w, k % w) of frame f: frames of
    non-square size whose merged blocks have distinct constant colours are traced through the
    processor's patch order (4 consecutive patch rows = one merged token)."""
    f = backbone.factor  # pixels per merged token side
    h, w, S = 2, 3, 2
    frames = torch.zeros(1, S, 3, h * f, w * f)
    for s in range(S):
        for i in range(h):
            for j in range(w):
                frames[0, s, :, i * f : (i + 1) * f, j * f : (j + 1) * f] = (s * h * w + i * w + j + 1) / 20
    batch = tiny_batch(1, S)
    batch.frames = frames
    inputs = backbone.prepare(batch)
    assert inputs["_grid"] == (S, h, w)
    vp = backbone.processor.video_processor
    mean, std = torch.tensor(vp.image_mean)[0], torch.tensor(vp.image_std)[0]
    first = inputs["pixel_values_videos"][:, 0] * std + mean  # channel 0, first pixel of each patch
    tokens = first.view(S * h * w, 4)
    assert torch.allclose(tokens, tokens[:, :1].expand(-1, 4), atol=1e-5)  # 4 patches of one block
    expect = (torch.arange(S * h * w, dtype=torch.float32) + 1) / 20
    torch.testing.assert_close(tokens[:, 0], expect, rtol=0, atol=1e-5)
    out = backbone(inputs, geometry=GeometryRequest(layers=(0,)))
    assert out.hidden[0].shape == (1, S, h, w, 32)


def test_geometry_layout_by_hand():
    """Layout of a hand-written 2-frame sequence (1x2 tokens per frame), positions worked out on paper."""
    from geovr_plugin_qwen_vl.layout import geometry_layout

    ids = torch.tensor([[10, 5, 5, 5, 5, 11, 12]])
    pos = torch.tensor(
        [
            [0, 1, 1, 2, 2, 3, 4],  # t
            [0, 1, 1, 1, 1, 3, 4],  # h
            [0, 1, 2, 1, 2, 3, 4],
        ]
    ).unsqueeze(1)  # w
    lay = geometry_layout(ids, pos, 5, (2, 1, 2), FULL)
    assert lay["input_ids"][0].tolist() == [10, 5, 5, CAMERA_ID, 5, 5, CAMERA_ID, SCALE_ID, 11, 12]
    assert lay["kind"][0].tolist() == [0, 0, 0, 1, 0, 0, 2, 3, 0, 0]
    assert lay["src"][0].tolist() == [0, 1, 2, -1, 3, 4, -1, -1, 5, 6]
    assert lay["position_ids"][:, 0].tolist() == [
        [0, 1, 1, 1, 2, 2, 2, 3, 4, 5],
        [0, 1, 1, 2, 1, 1, 2, 3, 4, 5],
        [0, 1, 2, 3, 1, 2, 3, 3, 4, 5],
    ]
    assert lay["camera_index"].tolist() == [[3, 6]] and lay["scale_index"].tolist() == [7]
    cam_only = geometry_layout(ids, pos, 5, (2, 1, 2), GeometryRequest(camera_tokens=True))
    assert cam_only["input_ids"][0].tolist() == [10, 5, 5, CAMERA_ID, 5, 5, CAMERA_ID, 11, 12]
    assert cam_only["position_ids"][0, 0, -2:].tolist() == [3, 4] and cam_only["scale_index"] is None
