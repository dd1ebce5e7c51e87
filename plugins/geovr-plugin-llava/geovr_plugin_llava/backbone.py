"""The ``llava_onevision`` backbone: transformers ``LlavaOnevisionForConditionalGeneration`` as a geovr
student (see :class:`geovr.protocols.Backbone`).

Shapes: ``B`` batch, ``S`` frames, ``T`` tokens, ``D`` LLM hidden size, ``h×w`` the pooled visual grid of
one frame (``h = w = ceil((image_size / patch_size) / 2)``, e.g. 27→14 for the 384-px SigLIP).

Ragged batches (samples with different frame counts or frame sizes, :attr:`Batch.ragged`): the processor
squares every frame to the vision tower's size anyway, so only ``S`` differs; such a batch is prepared and
run sample by sample and the outputs come back as per-sample lists (``hidden {layer: [S_i,h,w,D]}``,
``camera [S_i,D]``; ``scale [B,D]``; ``lm_loss`` the mean of the samples' losses; ``logits`` ``None``).
"""

from __future__ import annotations

import copy
import math
import os
from typing import TYPE_CHECKING

import torch
from torch import nn

from geovr.errors import GeovrError
from geovr.protocols import Batch, GeometryRequest, StudentOutput
from geovr_plugin_llava import loading, prompts
from geovr_plugin_llava.tokens import build_layout, gather_grid, splice

if TYPE_CHECKING:
    from geovr.protocols import BuildContext

_NOT_FOR_SPLICED = ("input_ids", "attention_mask", "labels", "pixel_values_videos", "image_sizes_videos")


class LlavaOneVisionBackbone(nn.Module):
    """LLaVA-OneVision student with learned camera/scale geometry tokens.

    ``model``: the HF model (LoRA layers injected in place when enabled); ``processor``: its
    ``LlavaOnevisionProcessor``; ``camera_embed``: ``Embedding(2, D)`` (0 = first frame, 1 = others);
    ``scale_embed``: ``Embedding(1, D)``. ``grid``: ``(h, w)`` visual tokens per frame.
    """

    def __init__(
        self,
        model,
        processor,
        *,
        peft_model=None,
        system_prompt: str | None = None,
        max_new_tokens: int = 16,
        seed: int = 0,
    ):
        super().__init__()
        self.model = model
        self.processor = processor
        self.__dict__["_peft"] = peft_model  # not a submodule: it wraps self.model
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        text, vision = model.config.text_config, model.config.vision_config
        self.num_layers = int(text.num_hidden_layers)
        self.hidden_size = int(text.hidden_size)
        side = math.ceil((vision.image_size // vision.patch_size) / 2)
        self.grid = (side, side)
        self.video_token_id = int(model.config.video_token_id)
        word = model.get_input_embeddings().weight
        std = float(word.detach().float().std())
        gen = torch.Generator().manual_seed(seed)
        self.camera_embed = nn.Embedding(2, self.hidden_size)
        self.scale_embed = nn.Embedding(1, self.hidden_size)
        with torch.no_grad():
            for emb in (self.camera_embed, self.scale_embed):
                emb.weight.copy_(torch.randn(emb.weight.shape, generator=gen) * std)
        self.camera_embed.to(word.device)
        self.scale_embed.to(word.device)

    @property
    def device(self) -> torch.device:
        """Device of the HF model's weights (inputs are moved there)."""
        return self.model.get_input_embeddings().weight.device

    def prepare(self, batch: Batch, *, with_answers: bool = True) -> dict:
        """Batch (frames ``[B,S,3,H,W]`` in [0,1]) → HF inputs: ``input_ids``/``attention_mask``
        ``[B,T]``, ``pixel_values_videos`` ``[B,S,3,H',W']``, ``labels`` ``[B,T]`` (-100 except answer
        tokens; only with answers) and the private ``_num_frames`` (S)."""
        if batch.ragged:  # per-sample inputs (see the module docstring)
            return {"_samples": [self.prepare(one, with_answers=with_answers) for one in batch.split()]}
        inputs = prompts.encode(self.processor, batch, system_prompt=self.system_prompt, with_answers=with_answers)
        inputs["_num_frames"] = batch.num_frames
        return inputs

    def _embed(self, hf: dict) -> torch.Tensor:
        """Input embeddings ``[B,T,D]`` with the video features written at the ``<video>`` tokens
        (the same computation as ``LlavaOnevisionModel.forward``)."""
        ids = hf["input_ids"]
        embeds = self.model.get_input_embeddings()(ids)
        video = self.model.model.get_video_features(hf["pixel_values_videos"], return_dict=True).pooler_output
        mask = (ids == self.video_token_id).unsqueeze(-1)
        return embeds.masked_scatter(mask, video.reshape(-1, embeds.shape[-1]).to(embeds.dtype))

    def forward(self, inputs: dict, *, geometry: GeometryRequest) -> StudentOutput:
        """Run the model on :meth:`prepare` output.

        Empty ``geometry``: exactly ``self.model(**inputs)``. Otherwise the requested layers' visual
        grids ``{layer: [B,S,h,w,D]}`` (HF ``hidden_states`` indexing), camera ``[B,S,D]`` and scale
        ``[B,D]`` states from the last hidden state (after the final norm); the tokens are spliced
        into the embedded sequence as described in :mod:`geovr_plugin_llava.tokens`.
        """
        if "_samples" in inputs:
            return self._forward_samples(inputs["_samples"], geometry)
        dev = self.device
        hf = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in inputs.items() if not k.startswith("_")}
        if geometry.empty:
            out = self.model(**hf)
            return StudentOutput(lm_loss=out.loss, logits=out.logits)
        bad = [layer for layer in geometry.layers if not 0 <= layer <= self.num_layers]
        if bad:
            raise GeovrError(f"llava_onevision: requested layers {bad} outside 0..{self.num_layers}")
        S = hf["pixel_values_videos"].shape[1]
        tokens = geometry.camera_tokens or geometry.scale_token
        layout = build_layout(
            hf["input_ids"],
            self.video_token_id,
            S,
            self.grid,
            camera=geometry.camera_tokens,
            scale=geometry.scale_token,
        )
        if not tokens:
            out = self.model(**hf, output_hidden_states=True, use_cache=False)
        else:
            B = hf["input_ids"].shape[0]
            frame_kind = torch.ones(B, S, dtype=torch.long, device=dev)
            frame_kind[:, 0] = 0
            camera = self.camera_embed(frame_kind) if geometry.camera_tokens else None
            scale = self.scale_embed.weight[0].expand(B, -1) if geometry.scale_token else None
            spliced = {
                "inputs_embeds": splice(self._embed(hf), layout, 0.0, camera=camera, scale=scale),
                "attention_mask": splice(hf["attention_mask"], layout, 1),
            }
            if "labels" in hf:
                spliced["labels"] = splice(hf["labels"], layout, prompts.IGNORE)
            rest = {k: v for k, v in hf.items() if k not in _NOT_FOR_SPLICED}
            out = self.model(**spliced, **rest, output_hidden_states=True, use_cache=False)
        states = out.hidden_states
        last = states[-1]  # [B,T',D] after the final norm
        D = last.shape[-1]
        camera = scale = None
        if layout.camera is not None:
            camera = last.gather(1, layout.camera[..., None].expand(-1, -1, D))  # [B,S,D]
        if layout.scale is not None:
            scale = last.gather(1, layout.scale[:, None, None].expand(-1, 1, D))[:, 0]  # [B,D]
        return StudentOutput(
            lm_loss=out.loss,
            logits=out.logits,
            hidden={layer: gather_grid(states[layer], layout, self.grid) for layer in geometry.layers},
            camera=camera,
            scale=scale,
        )

    def _forward_samples(self, samples: list[dict], geometry: GeometryRequest) -> StudentOutput:
        """A ragged batch: one forward per sample, outputs as per-sample lists (module docstring)."""
        outs = [self.forward(one, geometry=geometry) for one in samples]
        losses = [o.lm_loss for o in outs if o.lm_loss is not None]
        return StudentOutput(
            lm_loss=torch.stack(losses).mean() if losses else None,
            hidden={layer: [o.hidden[layer][0] for o in outs] for layer in geometry.layers},
            camera=[o.camera[0] for o in outs] if geometry.camera_tokens else None,
            scale=torch.cat([o.scale for o in outs]) if geometry.scale_token else None,
        )

    @torch.no_grad()
    def generate(self, batch: Batch, **generation_kwargs) -> list[str]:
        """Greedy-decode (unless overridden) one answer per sample; no geometry tokens."""
        if batch.ragged:
            return [text for one in batch.split() for text in self.generate(one, **generation_kwargs)]
        inputs = self.prepare(batch, with_answers=False)
        dev = self.device
        hf = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in inputs.items() if not k.startswith("_")}
        tok = self.processor.tokenizer
        generation_kwargs.setdefault("max_new_tokens", self.max_new_tokens)
        generation_kwargs.setdefault("do_sample", False)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        generation_kwargs.setdefault("pad_token_id", pad)
        was_training = self.training
        self.eval()
        try:
            out = self.model.generate(**hf, **generation_kwargs)
        finally:
            self.train(was_training)
        new = out[:, hf["input_ids"].shape[1] :]
        return [s.strip() for s in tok.batch_decode(new, skip_special_tokens=True)]

    def parameter_groups(self) -> dict[str, list]:
        """Trainable parameters: ``"base"`` (unfrozen HF weights or LoRA adapters) and ``"new"``."""
        return {
            "base": [p for p in self.model.parameters() if p.requires_grad],
            "new": [p for p in (*self.camera_embed.parameters(), *self.scale_embed.parameters()) if p.requires_grad],
        }

    def save_pretrained(self, path: str) -> None:
        """Write a plain transformers model directory (LoRA merged into a copy; geometry tokens are not
        part of the HF model) plus the processor, loadable with ``from_pretrained(path)``."""
        os.makedirs(path, exist_ok=True)
        peft_model = self.__dict__.get("_peft")
        model = copy.deepcopy(peft_model).merge_and_unload() if peft_model is not None else self.model
        model.save_pretrained(path)
        self.processor.save_pretrained(path)


def build(config, context: BuildContext) -> LlavaOneVisionBackbone:
    """Factory: :class:`~geovr_plugin_llava.config.LlavaOneVisionConfig` + BuildContext → backbone."""
    model, processor = loading.load(
        config.pretrained, dtype=config.dtype, attn_implementation=config.attn_implementation
    )
    loading.freeze(model, list(config.freeze))
    if config.gradient_checkpointing:
        loading.enable_checkpointing(model)
    peft_model = loading.add_lora(model, config.lora_options()) if config.lora is not None else None
    backbone = LlavaOneVisionBackbone(
        model,
        processor,
        peft_model=peft_model,
        system_prompt=config.system_prompt,
        max_new_tokens=config.max_new_tokens,
        seed=int(getattr(context, "seed", 0)),
    )
    return backbone.to(getattr(context, "device", "cpu") or "cpu")
