"""Qwen2.5-VL / Qwen3-VL students for geovr (:class:`geovr.protocols.Backbone`).

Video input
-----------
Each sample ``i`` of ``Batch.frames`` ``[B,S,3,H,W]`` in [0,1] (its valid ``S_i`` frames of ``H_i×W_i`` in a
ragged batch) is resized to its own ``[h_px, w_px]`` (:func:`target_frame_size`: Qwen's smart resize,
aspect ratio kept under a pixel budget). The Qwen vision tower packs ``temporal_patch_size = 2``
consecutive frames into one temporal patch. For training and geometry every frame is **duplicated**, so
each input frame gets its own temporal token group (``grid_t = S_i``; the released training does the
same). Generation uses the **native** layout by default (``inference_frames = "native"``, as the released
evaluation): consecutive frames share a patch, ``grid_t = ceil(S_i/2)``, and up to
``max_inference_frames`` (128) frames are accepted. After the 2×2 spatial merge each temporal group
becomes ``h·w`` LLM tokens (``h = h_px / (patch·2)``).

Time
----
Temporal positions come from the frames' real times (``Batch.frame_times`` seconds, else
``frame_indices / video_fps``): Qwen3-VL prints ``<t seconds>`` before each temporal group (the mean time
of its two frames); Qwen2.5-VL gets ``second_per_grid_ts`` = seconds between consecutive groups.

Chat format
-----------
system / user (video, then the question; multiple-choice options one per line after it) / assistant
(the answer), rendered by the processor's chat template. A sample with ``Batch.conversations`` turns is
rendered as that multi-turn chat (the video in the first user turn). ``labels`` are ``-100`` everywhere
except the tokens of every assistant turn and the end-of-turn token that closes each.

Geometry tokens
---------------
Inserted only when a :class:`GeometryRequest` asks for them; layout and M-RoPE positions are described
in :mod:`geovr_plugin_qwen_vl.layout`. The input embeddings are built as in HF (text embeddings with
the vision features scattered into the ``<|video_pad|>`` slots), then extended with the learned
``camera_tokens`` ``Embedding(2,D)`` and ``scale_token`` ``Embedding(1,D)`` rows.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import attrs
import torch
from torch import nn

from geovr.errors import CheckpointError, DataError, GeovrError
from geovr.protocols import Batch, GeometryRequest, StudentOutput
from geovr_plugin_qwen_vl.config import QwenVLBackboneConfig
from geovr_plugin_qwen_vl.layout import CAMERA_ID, SCALE_ID, geometry_layout
from geovr_plugin_qwen_vl.loading import (
    MODEL_TYPES,
    apply_freeze,
    load_model_and_processor,
    model_class,
    plain_state_dict,
    resolve_attn_implementation,
    wrap_lora,
)

if TYPE_CHECKING:
    from geovr.protocols import BuildContext

__all__ = [
    "QwenVLBackbone",
    "build",
    "build_qwen3_vl",
    "build_qwen2_5_vl",
    "target_frame_size",
    "CAMERA_ID",
    "SCALE_ID",
    "MODEL_TYPES",
    "model_class",
    "resolve_attn_implementation",
]
_GEOMETRY_FILE = "geometry_tokens.safetensors"

#: The empty geometry request (the plain HF forward).
NO_GEOMETRY = GeometryRequest()


def target_frame_size(
    height: int,
    width: int,
    factor: int,
    cfg: QwenVLBackboneConfig,
    *,
    num_frames: int = 1,
    kind: str = "qwen2_5_vl",
    inference: bool = False,
) -> tuple[int, int]:
    """Pixel size ``(h_px, w_px)`` the ``num_frames`` frames of one ``height×width`` video are resized to:
    multiples of ``factor`` (= patch size × spatial merge), aspect ratio kept as far as rounding allows.

    ``cfg.frame_size`` if set (a fixed size, rounded to ``factor``); otherwise Qwen's own smart resize from
    transformers: Qwen3-VL's video rule (a pixel budget for the whole video, ``video_min_pixels`` ..
    ``video_max_pixels``, defaulting to the per-frame bounds × frames) for ``kind="qwen3_vl"``, the
    Qwen2-VL per-frame rule (``min_pixels`` .. ``max_pixels``, with at most ``video_max_pixels /
    num_frames`` per frame when that is set) for Qwen2.5-VL. With ``inference`` and
    ``cfg.inference_max_pixels`` set, the video budget is per frame instead (``inference_min_pixels`` ..
    ``inference_max_pixels`` × frames, as the released evaluation sizes its 128-frame videos).
    """
    if cfg.frame_size is not None:
        h, w = cfg.frame_size
        return max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    n = max(int(num_frames), 1)
    if inference and cfg.inference_max_pixels is not None:  # per-frame bounds, no shared video budget
        cfg = attrs.evolve(
            cfg,
            min_pixels=cfg.inference_min_pixels or cfg.min_pixels,
            max_pixels=cfg.inference_max_pixels,
            video_min_pixels=None,
            video_max_pixels=None,
        )
    if kind == "qwen3_vl":
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as video_resize

        t = max(n, 2)  # the rule needs at least one temporal patch of 2 frames
        t_bar = round(t / 2) * 2
        lo = cfg.video_min_pixels if cfg.video_min_pixels is not None else cfg.min_pixels * t_bar
        hi = cfg.video_max_pixels if cfg.video_max_pixels is not None else cfg.max_pixels * t_bar
        h, w = video_resize(t, height, width, temporal_factor=2, factor=factor, min_pixels=lo, max_pixels=hi)
        return int(h), int(w)
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    hi = cfg.max_pixels if cfg.video_max_pixels is None else min(cfg.max_pixels, cfg.video_max_pixels // n)
    lo = min(cfg.min_pixels, hi)
    h, w = smart_resize(height, width, factor=factor, min_pixels=lo, max_pixels=hi)
    return int(h), int(w)


class QwenVLBackbone(nn.Module):
    """A Qwen-VL ``*ForConditionalGeneration`` plus learned camera/scale token embeddings.

    Attributes: ``model`` (the HF model, a peft ``PeftModel`` when LoRA is on), ``processor``,
    ``num_layers`` (LLM decoder layers), ``hidden_size`` (D), ``camera_tokens`` ``Embedding(2,D)``,
    ``scale_token`` ``Embedding(1,D)``. See the module docstring for the token layout.
    """

    def __init__(self, kind: str, config: QwenVLBackboneConfig):
        super().__init__()
        if kind not in MODEL_TYPES:
            raise GeovrError(f"unknown Qwen-VL backbone kind {kind!r}; expected one of {sorted(MODEL_TYPES)}")
        self.kind, self.config = kind, config
        self.processor, hf = load_model_and_processor(kind, config)
        text_cfg = hf.config.text_config
        self.num_layers = int(text_cfg.num_hidden_layers)
        self.hidden_size = int(text_cfg.hidden_size)
        vis = hf.config.vision_config
        self.merge = int(vis.spatial_merge_size)
        self.factor = int(vis.patch_size) * self.merge
        self.video_token_id = int(hf.config.video_token_id)
        std = float(hf.get_input_embeddings().weight.detach().float().std())
        self.camera_tokens = nn.Embedding(2, self.hidden_size)
        self.scale_token = nn.Embedding(1, self.hidden_size)
        nn.init.normal_(self.camera_tokens.weight, std=std)
        nn.init.normal_(self.scale_token.weight, std=std)
        apply_freeze(hf, config.freeze)
        if config.gradient_checkpointing:
            if hasattr(hf, "activation_checkpointing_enable"):
                hf.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:  # transformers < 5.x
                hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            hf.config.use_cache = False
        self.model = wrap_lora(hf, config)
        if config.adapter:
            self._load_geometry_tokens(config.adapter)
        tok = self.processor.tokenizer
        self._end_of_turn = tok.convert_tokens_to_ids("<|im_end|>")
        self._assistant_header = self._header_ids()

    @property
    def hf(self):
        """The underlying HF ``*ForConditionalGeneration`` (LoRA layers injected when enabled)."""
        m = self.model
        return m.get_base_model() if hasattr(m, "get_base_model") else m

    @property
    def device(self) -> torch.device:
        return self.camera_tokens.weight.device

    # ------------------------------------------------------------------ inputs
    def _header_ids(self) -> list[int]:
        """Token ids the chat template puts before an assistant answer (``<|im_start|>assistant\\n``)."""
        msgs = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
        with_prompt = self.processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        without = self.processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
        header = with_prompt[len(without) :] if with_prompt.startswith(without) else "<|im_start|>assistant\n"
        return self.processor.tokenizer(header, add_special_tokens=False)["input_ids"]

    def messages(self, question: str, options, answer: str | None, turns: list[dict] | None = None) -> list[dict]:
        """Chat messages of one sample (system, user = video + question [+ options], assistant). With
        ``turns`` (``[{"role", "text"}, ...]``, :attr:`Batch.conversations`) every turn, the video in the
        first user turn; without an answer (generation) a trailing assistant turn is left out."""
        if turns:
            if answer is None and turns[-1]["role"] == "assistant":
                turns = turns[:-1]
            msgs = [{"role": "system", "content": [{"type": "text", "text": self.config.system_prompt}]}]
            for n, t in enumerate(turns):
                content = [{"type": "text", "text": t["text"]}]
                msgs.append({"role": t["role"], "content": [{"type": "video"}, *content] if n == 0 else content})
            return msgs
        text = question if not options else question + "\n" + "\n".join(options)
        msgs = [
            {"role": "system", "content": [{"type": "text", "text": self.config.system_prompt}]},
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]},
        ]
        if answer is not None:
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return msgs

    def _videos(self, batch: Batch, native: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Resize each sample's frames (own size, :func:`target_frame_size`) and lay them out for the
        vision tower's 2-frame temporal patches → ``(videos, times)``: per sample ``[T,3,h_px,w_px]``
        and ``[T]`` seconds. Duplicated (training, geometry): ``T = 2·S_i``, each frame twice, one temporal
        token group per frame. ``native``: ``T = S_i`` rounded up to even by repeating the last frame,
        consecutive frames sharing a temporal patch (``ceil(S_i/2)`` groups)."""
        frames = batch.frames
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise DataError(f"Batch.frames must be [B,S,3,H,W], got {tuple(frames.shape)}")
        limit = self.config.max_inference_frames if native else self.config.max_frames
        times = self._frame_times(batch)
        videos, out_times = [], []
        for i in range(batch.batch_size):
            S, (H, W) = batch.frames_of(i), batch.size_of(i)
            if S > limit:
                which = "max_inference_frames" if native else "max_frames"
                raise DataError(f"sample {i} has S={S} frames per video but backbone {which}={limit}")
            h, w = target_frame_size(H, W, self.factor, self.config, num_frames=S, kind=self.kind, inference=native)
            x = frames[i, :S, :, :H, :W].float()
            if (h, w) != (H, W):
                x = nn.functional.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
                x = x.clamp_(0, 1)
            t = times[i, :S]
            if native:
                if S % 2:
                    x, t = torch.cat([x, x[-1:]]), torch.cat([t, t[-1:]])
            else:
                x, t = x.repeat_interleave(2, dim=0), t.repeat_interleave(2)
            videos.append(x.cpu())
            out_times.append(t.cpu())
        return videos, out_times

    def _frame_times(self, batch: Batch) -> torch.Tensor:
        """``[B,S]`` seconds of each frame: ``Batch.frame_times`` when the data has them, else
        ``frame_indices / video_fps`` (the recipe's declared source frame rate)."""
        if batch.frame_times is not None:
            return batch.frame_times.detach().cpu().double()
        B, S = batch.batch_size, batch.num_frames
        idx = batch.frame_indices if batch.frame_indices is not None else torch.arange(S).expand(B, S)
        return idx.detach().cpu().double() / self.config.video_fps

    def prepare(self, batch: Batch, *, with_answers: bool = True, native: bool = False) -> dict:
        """Batch → HF inputs on the backbone's device.

        Returns ``input_ids``/``attention_mask``/``mm_token_type_ids`` ``[B,L]``, ``labels`` ``[B,L]``
        (with answers; ``-100`` except assistant-turn + end-of-turn tokens), ``pixel_values_videos``
        ``[Σ_i T_i·(2h_i)·(2w_i), C·2·p·p]``, ``video_grid_thw`` ``[B,3]`` = ``(T_i, 2h_i, 2w_i)`` and, for
        Qwen2.5-VL, ``second_per_grid_ts`` ``[B]`` (seconds per temporal group from the frames' real
        times). Qwen3-VL's ``<t seconds>`` prompt text is built from the same times. ``native`` selects the
        frame layout of :meth:`_videos` (``False``: duplicated, as geometry outputs need; :meth:`generate`
        passes ``config.inference_frames == "native"``). Private extras (not passed to HF): ``_grids`` the per-sample
        ``(T_i, h_i, w_i)`` merged-token grids, ``_grid`` the common one (``None`` for a ragged batch),
        ``_native``. Right padding for training, left for generation.
        """
        videos, times = self._videos(batch, native)
        texts = []
        for i in range(batch.batch_size):
            opts = batch.options[i] if i < len(batch.options) else None
            turns = batch.conversations[i] if batch.conversations is not None else None
            msgs = self.messages(batch.questions[i], opts, batch.answers[i] if with_answers else None, turns)
            texts.append(
                self.processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=not with_answers)
            )
        kw = dict(do_resize=False, do_rescale=False, do_sample_frames=False, cap_pixels_per_frame=False)
        if self.kind == "qwen3_vl":
            # the processor prints <(t_a + t_b)/2 seconds> per temporal patch with t = index / fps: give it the
            # frames' times in seconds as "indices" at 1 fps
            kw["video_metadata"] = [
                {"fps": 1.0, "frames_indices": t.tolist(), "total_num_frames": len(t)} for t in times
            ]
        tok = self.processor.tokenizer
        side = tok.padding_side
        tok.padding_side = "right" if with_answers else "left"
        try:
            out = dict(self.processor(text=texts, videos=videos, return_tensors="pt", padding=True, **kw))
        finally:
            tok.padding_side = side
        out.pop("token_type_ids", None)
        if self.kind == "qwen2_5_vl":
            out["second_per_grid_ts"] = torch.tensor([self._seconds_per_group(t) for t in times], dtype=torch.float32)
        if with_answers:
            out["labels"] = self._labels(out["input_ids"], out["attention_mask"])
        grids = [(int(g[0]), int(g[1]) // self.merge, int(g[2]) // self.merge) for g in out["video_grid_thw"].tolist()]
        out["_grids"] = grids
        out["_grid"] = grids[0] if len(set(grids)) == 1 else None
        out["_native"] = bool(native)
        return {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in out.items()}

    @staticmethod
    def _seconds_per_group(times: torch.Tensor) -> float:
        """Seconds between consecutive temporal token groups of one video laid out by :meth:`_videos`
        (``times`` ``[T]``, 2 per group): the mean spacing of the groups' first frames (1 s for one group)."""
        starts = times[0::2].double()
        if starts.numel() < 2:
            return 1.0
        return float(max((starts[-1] - starts[0]) / (starts.numel() - 1), 1e-6))

    def _labels(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``-100`` except the tokens after each assistant header up to and including its ``<|im_end|>``."""
        labels = torch.full_like(ids, -100)
        head = torch.tensor(self._assistant_header)
        n = len(head)
        for b in range(ids.shape[0]):
            row = ids[b]
            valid = mask[b].bool()
            if row.numel() < n:
                continue
            hits = ((row.unfold(0, n, 1) == head.to(row.device)).all(-1) & valid[: row.numel() - n + 1]).nonzero()
            for hit in hits.flatten().tolist():
                start = int(hit) + n
                ends = ((row[start:] == self._end_of_turn) & valid[start:]).nonzero()
                stop = start + int(ends[0]) + 1 if len(ends) else int(valid.nonzero().max()) + 1
                labels[b, start:stop] = row[start:stop]
        return labels

    # ------------------------------------------------------------------ geometry layout
    def _hf_inputs(self, inputs: dict) -> dict:
        return {k: v for k, v in inputs.items() if not k.startswith("_")}

    def _rope_index(self, inputs: dict) -> torch.Tensor:
        """HF multimodal RoPE positions ``[3,B,L]`` of the original sequence."""
        kw = dict(
            mm_token_type_ids=inputs["mm_token_type_ids"],
            video_grid_thw=inputs["video_grid_thw"],
            attention_mask=inputs["attention_mask"],
        )
        if self.kind == "qwen2_5_vl":
            kw["second_per_grid_ts"] = inputs.get("second_per_grid_ts")
        pos, _ = self.hf.model.get_rope_index(inputs["input_ids"], **kw)
        return pos

    def geometry_layout(self, inputs: dict, geometry: GeometryRequest) -> dict:
        """:func:`geovr_plugin_qwen_vl.layout.geometry_layout` for ``inputs`` from :meth:`prepare`."""
        grid = inputs["_grid"] if inputs.get("_grid") is not None else list(inputs["_grids"])
        return geometry_layout(inputs["input_ids"], self._rope_index(inputs), self.video_token_id, grid, geometry)

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: dict, *, geometry: GeometryRequest = NO_GEOMETRY) -> StudentOutput:
        """Run the student on :meth:`prepare` output.

        Empty request → exactly ``self.model(**inputs)``. Layers only → the same HF forward with
        ``output_hidden_states``. Camera/scale tokens → the extended sequence described in the module
        docstring. Returns :class:`StudentOutput` with ``logits`` ``[B,L(+S+1),V]``, ``hidden``
        ``{layer: [B,S,h,w,D]}``, ``camera`` ``[B,S,D]``, ``scale`` ``[B,D]`` (last layer, after the
        final norm, as HF ``hidden_states[-1]``).
        """
        bad = [layer for layer in geometry.layers if not 0 <= layer <= self.num_layers]
        if bad:
            raise GeovrError(f"requested hidden-state layers {bad} outside 0..{self.num_layers} of {self.kind}")
        if inputs.get("_native") and not geometry.empty:
            raise GeovrError(
                "geometry outputs need one temporal token group per frame: prepare the batch with "
                "native=False (frames duplicated), not the native inference layout"
            )
        hf_inputs = self._hf_inputs(inputs)
        if geometry.empty:
            out = self.model(**hf_inputs)
            return StudentOutput(lm_loss=out.loss, logits=out.logits)
        if not (geometry.camera_tokens or geometry.scale_token):
            out = self.model(**hf_inputs, output_hidden_states=True)
            vmask = inputs["input_ids"] == self.video_token_id
            return StudentOutput(
                lm_loss=out.loss,
                logits=out.logits,
                hidden=self._grids(out.hidden_states, vmask, geometry.layers, inputs),
            )
        return self._forward_with_tokens(inputs, geometry)

    def _grids(self, hidden_states, vmask: torch.Tensor, layers, inputs: dict) -> dict:
        """Visual tokens of each requested layer as ``[B,S,h,w,D]`` (tokens are frame-major, then merged
        rows, then merged columns); for a ragged batch a list of ``B`` tensors ``[S_b,h_b,w_b,D]``."""
        if inputs.get("_grid") is not None:
            S, h, w = inputs["_grid"]
            B = vmask.shape[0]
            return {layer: hidden_states[layer][vmask].view(B, S, h, w, -1) for layer in layers}
        grids = inputs["_grids"]
        return {
            layer: [hidden_states[layer][b][vmask[b]].view(*grids[b], -1) for b in range(len(grids))]
            for layer in layers
        }

    def _forward_with_tokens(
        self, inputs: dict, geometry: GeometryRequest, layout: dict | None = None
    ) -> StudentOutput:
        hf = self.hf
        core = hf.model
        ids = inputs["input_ids"]
        layout = layout or self.geometry_layout(inputs, geometry)
        embeds = core.get_input_embeddings()(ids)
        vis = core.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"], return_dict=True)
        video_embeds = torch.cat(vis.pooler_output, 0).to(embeds.device, embeds.dtype)
        vmask = ids == self.video_token_id
        embeds = embeds.masked_scatter(vmask.unsqueeze(-1).expand_as(embeds), video_embeds)
        kind, src = layout["kind"], layout["src"].clamp(min=0)
        new = embeds.gather(1, src.unsqueeze(-1).expand(-1, -1, embeds.shape[-1]))
        geo = torch.cat([self.camera_tokens.weight, self.scale_token.weight]).to(new.dtype)  # rows: cam0, cam1, scale
        extra = geo[(kind - 1).clamp(min=0, max=2)]
        new = torch.where(((kind > 0) & (kind < 4)).unsqueeze(-1), extra, new)
        attn = torch.where(kind == 4, 0, torch.where(kind > 0, 1, inputs["attention_mask"].gather(1, src)))
        new_vmask = vmask.gather(1, src) & (kind == 0)
        kw = {}
        if getattr(vis, "deepstack_features", None) is not None:
            kw["visual_pos_masks"] = new_vmask
            kw["deepstack_visual_embeds"] = [torch.cat(f, 0).to(new.device, new.dtype) for f in vis.deepstack_features]
        out = core.language_model(
            input_ids=None,
            inputs_embeds=new,
            attention_mask=attn,
            position_ids=layout["position_ids"],
            use_cache=False,
            output_hidden_states=True,
            **kw,
        )
        logits = hf.lm_head(out.last_hidden_state)
        loss = None
        if "labels" in inputs:
            labels = torch.where(kind > 0, -100, inputs["labels"].gather(1, src))
            loss = hf.loss_function(logits=logits, labels=labels, vocab_size=hf.config.text_config.vocab_size)
        last = out.hidden_states[-1]
        B = ids.shape[0]
        camera = scale = None
        cam_idx = layout["camera_index"]
        if isinstance(cam_idx, list):  # ragged: [S_b,D] per sample
            camera = [last[b, cam_idx[b]] for b in range(B)]
        elif cam_idx is not None:
            camera = last.gather(1, cam_idx.unsqueeze(-1).expand(-1, -1, last.shape[-1]))
        if layout["scale_index"] is not None:
            scale = last[torch.arange(B, device=last.device), layout["scale_index"]]
        hidden = self._grids(out.hidden_states, new_vmask, geometry.layers, inputs)
        return StudentOutput(lm_loss=loss, logits=logits, hidden=hidden, camera=camera, scale=scale)

    # ------------------------------------------------------------------ generation / saving
    @torch.no_grad()
    def generate(self, batch: Batch, **generation_kwargs) -> list[str]:
        """Greedy-decode (unless overridden) one answer per sample, without geometry tokens."""
        inputs = self._hf_inputs(
            self.prepare(batch, with_answers=False, native=self.config.inference_frames == "native")
        )
        kw = {
            "max_new_tokens": self.config.max_new_tokens,
            "do_sample": False,
            "pad_token_id": self.processor.tokenizer.pad_token_id,
        }
        kw.update(generation_kwargs)
        out = self.model.generate(**inputs, **kw)
        new = out[:, inputs["input_ids"].shape[1] :]
        return [s.strip() for s in self.processor.batch_decode(new, skip_special_tokens=True)]

    def parameter_groups(self) -> dict[str, list]:
        """Trainable parameters: ``"base"`` (unfrozen HF weights or LoRA adapters) and ``"new"``
        (camera and scale token embeddings)."""
        new = [self.camera_tokens.weight, self.scale_token.weight]
        base = [p for p in self.model.parameters() if p.requires_grad]
        return {"base": base, "new": [p for p in new if p.requires_grad]}

    @torch.no_grad()
    def save_pretrained(self, path: str) -> None:
        """Write a plain transformers model directory (LoRA merged, no geometry tokens) + processor,
        loadable with ``*ForConditionalGeneration.from_pretrained(path)`` / ``AutoProcessor``."""
        os.makedirs(path, exist_ok=True)
        self.hf.save_pretrained(path, state_dict=plain_state_dict(self.model, self.hf))
        self.processor.save_pretrained(path)

    def save_adapter(self, path: str) -> None:
        """Write the LoRA adapter (peft format, when LoRA is on) and the geometry token embeddings
        (``geometry_tokens.safetensors``) to ``path``; load back with the ``adapter`` option."""
        from safetensors.torch import save_file

        os.makedirs(path, exist_ok=True)
        if self.model is not self.hf:
            self.model.save_pretrained(path)
        save_file(
            {
                "camera_tokens": self.camera_tokens.weight.detach().cpu().contiguous(),
                "scale_token": self.scale_token.weight.detach().cpu().contiguous(),
            },
            os.path.join(path, _GEOMETRY_FILE),
        )

    def _load_geometry_tokens(self, path: str) -> None:
        from safetensors.torch import load_file

        f = os.path.join(path, _GEOMETRY_FILE)
        if not os.path.isfile(f):
            raise CheckpointError(
                f"adapter={path!r}: missing {_GEOMETRY_FILE} (expected a directory written by save_adapter)"
            )
        t = load_file(f)
        for key, emb in (("camera_tokens", self.camera_tokens), ("scale_token", self.scale_token)):
            if key not in t or t[key].shape != emb.weight.shape:
                raise CheckpointError(
                    f"{f}: {key} must have shape {tuple(emb.weight.shape)}, "
                    f"got {None if key not in t else tuple(t[key].shape)}"
                )
            with torch.no_grad():
                emb.weight.copy_(t[key])


def build(kind: str, config: QwenVLBackboneConfig, context: BuildContext | None = None) -> QwenVLBackbone:
    """Build a backbone of ``kind`` and move it to ``context.device``."""
    device = getattr(context, "device", "cpu") or "cpu"
    return QwenVLBackbone(kind, config).to(device)


def build_qwen3_vl(config, context: BuildContext | None = None) -> QwenVLBackbone:
    """Factory of the ``qwen3_vl`` backbone (``factory(config, context)``)."""
    return build("qwen3_vl", config, context)


def build_qwen2_5_vl(config, context: BuildContext | None = None) -> QwenVLBackbone:
    """Factory of the ``qwen2_5_vl`` backbone (``factory(config, context)``)."""
    return build("qwen2_5_vl", config, context)
