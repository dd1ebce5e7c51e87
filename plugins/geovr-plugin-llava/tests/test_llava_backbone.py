"""The llava_onevision backbone on the tiny random checkpoint: contract, token positions, grids,
labels, LoRA, generation and export. All comparisons are on real tensors of the tiny model."""

from __future__ import annotations

import pytest
import torch

from geovr.protocols import BuildContext, GeometryRequest
from geovr.testing.contracts import check_backbone
from geovr_plugin_llava.backbone import build
from geovr_plugin_llava.testing import GRID, tiny_batch

HW = GRID[0] * GRID[1]


def _video_start(ids, video_id):
    return int((ids == video_id).nonzero()[0])


class _Capture:
    """Forward hook on the LLM (``model.model.language_model``): its ``inputs_embeds`` and hidden states."""

    def __init__(self, module):
        self.calls = []
        self.handle = module.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        self.calls.append((kwargs["inputs_embeds"].detach(), [h.detach() for h in output.hidden_states or ()]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_check_backbone_contract(llava_backbone):
    batch = tiny_batch(batch_size=2, num_frames=2)
    out = check_backbone(llava_backbone, batch, layers=(0, 1, 2), frozen_prefixes=("vision_tower",))
    assert tuple(out.hidden[1].shape) == (2, 2, *GRID, llava_backbone.hidden_size)
    assert llava_backbone.num_layers == 2 and llava_backbone.hidden_size == 32


def test_check_backbone_with_projector_frozen(llava_config):
    backbone = build(llava_config(freeze=["vision", "projector"]), BuildContext())
    check_backbone(
        backbone,
        tiny_batch(2, 2),
        layers=(2,),
        frozen_prefixes=("vision_tower", "multi_modal_projector", "image_newline"),
    )
    names = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert not any("vision_tower" in n or "multi_modal_projector" in n for n in names)
    assert "model.model.language_model.layers.0.self_attn.q_proj.weight" in names


def test_check_backbone_in_bfloat16(llava_config):
    backbone = build(llava_config(dtype="bfloat16"), BuildContext())
    assert backbone.model.dtype == torch.bfloat16
    out = check_backbone(backbone, tiny_batch(2, 2), layers=(1,), frozen_prefixes=("vision_tower",))
    assert out.camera.dtype == torch.bfloat16 and out.hidden[1].dtype == torch.bfloat16


def test_labels_cover_only_the_answer(llava_backbone):
    batch = tiny_batch(batch_size=2, num_frames=2)
    inputs = llava_backbone.prepare(batch)
    tok = llava_backbone.processor.tokenizer
    for b in range(2):
        ids, labels = inputs["input_ids"][b], inputs["labels"][b]
        keep = labels != -100
        assert tok.decode(labels[keep]) == batch.answers[b] + "<|im_end|>\n"
        assert torch.equal(labels[keep], ids[keep])
        text = tok.decode(ids[inputs["attention_mask"][b].bool()])
        assert text.startswith("<|im_start|>user\n" + "<video>" * (2 * HW + 1) + "\n" + batch.questions[b])
        assert text.endswith("<|im_start|>assistant\n" + batch.answers[b] + "<|im_end|>\n")
        user = batch.questions[b] + "".join("\n" + o for o in (batch.options[b] or []))
        assert text.count(user + "<|im_end|>") == 1  # question verbatim, options one per line
    prompt = llava_backbone.prepare(batch, with_answers=False)
    assert "labels" not in prompt
    lengths = prompt["attention_mask"].sum(1)
    assert bool((prompt["attention_mask"][:, -1] == 1).all()) and int(lengths.min()) < prompt["input_ids"].shape[1]
    for b in range(2):
        assert tok.decode(prompt["input_ids"][b, -int(lengths[b]) :]).endswith("<|im_start|>assistant\n")


def test_frames_in_unit_range_are_normalised_once(llava_backbone):
    """[0,1] frames are not rescaled again: a constant 0.5 frame becomes (0.5 − mean) / std (CLIP)."""
    batch = tiny_batch(batch_size=1, num_frames=2)
    batch.frames[:] = 0.5
    pixels = llava_backbone.prepare(batch)["pixel_values_videos"]
    assert tuple(pixels.shape) == (1, 2, 3, 40, 40)
    proc = llava_backbone.processor.video_processor
    mean, std = torch.tensor(proc.image_mean), torch.tensor(proc.image_std)
    expected = ((0.5 - mean) / std).view(1, 1, 3, 1, 1).expand_as(pixels)
    torch.testing.assert_close(pixels, expected, rtol=0, atol=1e-5)


def test_system_prompt_is_the_first_turn(llava_config):
    bb = build(llava_config(system_prompt="You see a room."), BuildContext())
    inputs = bb.prepare(tiny_batch(batch_size=1, num_frames=1))
    text = bb.processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.startswith("<|im_start|>system\nYou see a room.<|im_end|>\n<|im_start|>user\n<video>")


def test_grids_equal_hf_hidden_states_without_inserted_tokens(llava_backbone):
    bb = llava_backbone
    inputs = bb.prepare(tiny_batch(batch_size=2, num_frames=3))
    hf = {k: v for k, v in inputs.items() if not k.startswith("_")}
    with torch.no_grad():
        out = bb(inputs, geometry=GeometryRequest(layers=(0, 1, 2)))
        ref = bb.model(**hf, output_hidden_states=True)
    assert torch.equal(out.logits, ref.logits) and torch.equal(out.lm_loss, ref.loss)
    for layer in (0, 1, 2):
        for b in range(2):
            start = _video_start(hf["input_ids"][b], bb.video_token_id)
            for s in range(3):
                for i in range(GRID[0]):
                    for j in range(GRID[1]):
                        pos = start + s * HW + i * GRID[1] + j
                        assert torch.equal(out.hidden[layer][b, s, i, j], ref.hidden_states[layer][b, pos])


@pytest.mark.parametrize("S", [1, 2, 4])
def test_camera_and_scale_tokens_positions_and_states(llava_backbone, S):
    bb = llava_backbone
    tok = bb.processor.tokenizer
    batch = tiny_batch(batch_size=2, num_frames=S, seed=S)
    inputs = bb.prepare(batch)
    ids = inputs["input_ids"]
    hf = {k: v for k, v in inputs.items() if not k.startswith("_")}
    lm = bb.model.model.language_model
    req = GeometryRequest(layers=(1, 2), camera_tokens=True, scale_token=True)
    with torch.no_grad(), _Capture(lm) as cap:
        out = bb(inputs, geometry=req)
        bb.model(**hf)
    (embeds, states), (plain_embeds, _) = cap.calls
    assert embeds.shape[1] == ids.shape[1] + S + 1
    cam_w, scale_w = bb.camera_embed.weight.detach(), bb.scale_embed.weight.detach()[0]
    for b in range(2):
        # find the geometry tokens by their embeddings, independently of the backbone's layout code
        is_cam = [(embeds[b, t] == cam_w[0]).all() or (embeds[b, t] == cam_w[1]).all() for t in range(embeds.shape[1])]
        cam_pos = [t for t, c in enumerate(is_cam) if c]
        scale_pos = [t for t in range(embeds.shape[1]) if (embeds[b, t] == scale_w).all()]
        assert len(cam_pos) == S and len(scale_pos) == 1
        assert torch.equal(embeds[b, cam_pos[0]], cam_w[0])
        assert all(torch.equal(embeds[b, t], cam_w[1]) for t in cam_pos[1:])
        start = _video_start(ids[b], bb.video_token_id)
        assert cam_pos == [start + s * (HW + 1) + HW for s in range(S)]
        assert scale_pos == [start + S * (HW + 1) + 1]
        # decode the original ids with the inserted tokens written as text
        inserted = set(cam_pos) | set(scale_pos)
        original = iter(ids[b].tolist())
        pieces = [
            "<camera>" if t in cam_pos else "<scale>" if t in scale_pos else tok.decode([next(original)])
            for t in range(embeds.shape[1])
        ]
        text = "".join(pieces)
        video = ("<video>" * HW + "<camera>") * S + "<video><scale>\n"
        assert text.startswith("<|im_start|>user\n" + video + batch.questions[b])
        assert text.count("<camera>") == S
        # non-inserted embeddings equal the HF model's own inputs_embeds (same video features)
        kept = [t for t in range(embeds.shape[1]) if t not in inserted]
        assert torch.equal(embeds[b, kept], plain_embeds[b])
        # grids, camera and scale states equal the LLM hidden states at the expected positions
        for layer in (1, 2):
            for s in range(S):
                for i in range(GRID[0]):
                    for j in range(GRID[1]):
                        pos = start + s * (HW + 1) + i * GRID[1] + j
                        assert torch.equal(out.hidden[layer][b, s, i, j], states[layer][b, pos])
        assert torch.equal(out.camera[b], states[-1][b, cam_pos])
        assert torch.equal(out.scale[b], states[-1][b, scale_pos[0]])
    assert tuple(out.camera.shape) == (2, S, bb.hidden_size) and tuple(out.scale.shape) == (2, bb.hidden_size)
    assert out.lm_loss is not None and torch.isfinite(out.lm_loss)


def test_tokens_before_the_first_camera_token_are_unchanged(llava_backbone):
    """Causal attention: everything up to frame 0's last visual token sees the same context with or
    without geometry tokens, so its hidden states match the plain HF forward (sdpa, atol 1e-6)."""
    bb = llava_backbone
    inputs = bb.prepare(tiny_batch(batch_size=2, num_frames=2))
    hf = {k: v for k, v in inputs.items() if not k.startswith("_")}
    with torch.no_grad():
        out = bb(inputs, geometry=GeometryRequest(layers=(2,), camera_tokens=True))
        ref = bb.model(**hf, output_hidden_states=True)
    for b in range(2):
        start = _video_start(hf["input_ids"][b], bb.video_token_id)
        frame0 = ref.hidden_states[2][b, start : start + HW].view(*GRID, -1)
        torch.testing.assert_close(out.hidden[2][b, 0], frame0, rtol=0, atol=1e-6)
        frame1 = ref.hidden_states[2][b, start + HW : start + 2 * HW].view(*GRID, -1)
        assert not torch.allclose(out.hidden[2][b, 1], frame1)  # frame 1 sees the camera token


def test_geometry_tokens_do_not_change_labels_or_loss_terms(llava_backbone):
    """The inserted tokens carry label -100: the number of supervised tokens is unchanged."""
    bb = llava_backbone
    inputs = bb.prepare(tiny_batch(batch_size=2, num_frames=2))
    captured = {}

    def hook(module, args, kwargs, output):
        captured["labels"] = kwargs.get("labels")

    handle = bb.model.register_forward_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            bb(inputs, geometry=GeometryRequest(camera_tokens=True, scale_token=True))
    finally:
        handle.remove()
    labels = captured["labels"]
    assert labels.shape[1] == inputs["labels"].shape[1] + 3
    assert torch.equal(labels[labels != -100], inputs["labels"][inputs["labels"] != -100])


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(llava_config):
    batch = tiny_batch(batch_size=2, num_frames=2)
    req = GeometryRequest(layers=(1,), camera_tokens=True, scale_token=True)
    grads = []
    for gc in (False, True):
        bb = build(llava_config(gradient_checkpointing=gc), BuildContext(seed=0)).train()
        calls: list[int] = []
        mlp = bb.model.model.language_model.layers[0].mlp
        handle = mlp.register_forward_pre_hook(lambda *a, calls=calls: calls.append(1))
        out = bb(bb.prepare(batch), geometry=req)
        (out.lm_loss + out.camera.mean() + out.scale.mean()).backward()
        handle.remove()
        assert len(calls) == (2 if gc else 1)  # checkpointing recomputes the layer in backward
        grads.append([p.grad.clone() for p in (*bb.parameter_groups()["base"], *bb.parameter_groups()["new"])])
    for a, b in zip(*grads, strict=False):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_generate_is_greedy_decoding_of_the_hf_model(llava_backbone):
    bb = llava_backbone
    batch = tiny_batch(batch_size=2, num_frames=2)
    answers = bb.generate(batch, max_new_tokens=4)
    assert isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert answers == bb.generate(batch, max_new_tokens=4)
    single = tiny_batch(batch_size=1, num_frames=2)
    prompt = bb.prepare(single, with_answers=False)
    with torch.no_grad():
        logits = bb(prompt, geometry=GeometryRequest()).logits
        ids = bb.model.generate(
            **{k: v for k, v in prompt.items() if not k.startswith("_")}, max_new_tokens=1, do_sample=False
        )
    assert int(ids[0, -1]) == int(logits[0, -1].argmax())
    bb.train()
    bb.generate(single, max_new_tokens=1)
    assert bb.training
    bb.eval()


def test_save_pretrained_loads_with_plain_transformers(llava_backbone, tmp_path):
    from safetensors import safe_open
    from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration

    bb = llava_backbone
    bb.save_pretrained(str(tmp_path / "export"))
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(str(tmp_path / "export"), dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(str(tmp_path / "export"))
    with safe_open(str(tmp_path / "export" / "model.safetensors"), "pt") as f:
        assert not any("camera" in k or "scale_embed" in k for k in f.keys())
    inputs = bb.prepare(tiny_batch(batch_size=2, num_frames=2))
    hf = {k: v for k, v in inputs.items() if not k.startswith("_")}
    with torch.no_grad():
        assert torch.equal(model(**hf).logits, bb(inputs, geometry=GeometryRequest()).logits)
    assert processor.tokenizer.convert_tokens_to_ids("<video>") == bb.video_token_id
