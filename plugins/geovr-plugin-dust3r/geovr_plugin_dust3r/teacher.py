"""The ``dust3r`` video teacher: DUSt3R run on frame pairs, turned into per-frame outputs.

For a video ``frames [B,S,3,H,W]`` in [0,1] the frames are preprocessed to ``[B,S,3,H',W']`` (see
:mod:`geovr_plugin_dust3r.preprocess`). With ``alignment = "global"`` (default) the network runs on the
ordered pairs of the pair graph and :func:`geovr_plugin_dust3r.global_align.global_align` solves for
per-frame poses, focal lengths and depth maps (at the pairs' average scale); videos of one or two
frames use the pairwise derivation below, as DUSt3R's demo does for two images. With ``"oneref"`` each
frame is paired with its anchor (frame 0, or its keyframe) in both orders and
:func:`geovr_plugin_dust3r.pointmaps.frames_from_pairs` derives depth, focal length, poses and points
(at the scale of frame 0's own pointmap). All outputs are at the working resolution ``H'×W'`` and in
the frame of camera 0 (identity pose), at DUSt3R's scale, not metres.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING

import attrs
import torch
from torch import Tensor, nn

from geovr.errors import RecipeError
from geovr.geometry import extri_intri_to_pose_encoding
from geovr.protocols import Batch, TeacherOutput
from geovr.unpickling import pickle_allowed
from geovr_plugin_dust3r.checkpoint import load_weights, resolve_checkpoint
from geovr_plugin_dust3r.config import PROVIDES, DUSt3RTeacherConfig
from geovr_plugin_dust3r.global_align import global_align, make_edges
from geovr_plugin_dust3r.model import AsymmetricCroCo3DStereo, DecoderOutput
from geovr_plugin_dust3r.pointmaps import anchors, frames_from_pairs
from geovr_plugin_dust3r.preprocess import preprocess

if TYPE_CHECKING:
    from geovr.protocols import BuildContext

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CACHE_VERSION = "dust3r-teacher-2"


class DUSt3RTeacher(nn.Module):
    """Frozen DUSt3R teacher (see module docstring). ``num_layers`` = decoder depth,
    ``feature_dim`` = decoder width; ``features[l]`` = block ``l``'s view-1 tokens of each frame
    (block ``num_layers − 1`` after ``dec_norm``), ``[B,S,H'/16,W'/16,C]``."""

    provides = PROVIDES

    def __init__(self, model: AsymmetricCroCo3DStereo, config: DUSt3RTeacherConfig, weights_id: str):
        super().__init__()
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.config = config
        self.num_layers = model.arch.dec_depth
        self.feature_dim = model.arch.dec_embed_dim
        self.layers = config.feature_layers()
        self._weights_id = weights_id

    def train(self, mode: bool = True):
        """The teacher stays in eval mode."""
        return super().train(False)

    def cache_key(self) -> str:
        """Digest of the weights identity, the architecture and every option affecting outputs."""
        opts = attrs.asdict(self.config)
        for k in ("pair_batch_size", "cache_dir", "revision", "pretrained", "model_config"):
            opts.pop(k, None)
        payload = json.dumps(
            {"v": CACHE_VERSION, "weights": self._weights_id, "arch": repr(self.model.arch), "opts": opts},
            sort_keys=True,
            default=str,
        )
        return "dust3r-" + hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _run_pairs(self, img: Tensor, first: list[int], second: list[int], layers: tuple[int, ...]) -> dict:
        """Run the network on the frame pairs ``(first[p], second[p])`` of every video.

        img ``[B,S,3,H,W]`` in [-1,1]. Each frame is encoded once; the decoders and heads run on
        ``pair_batch_size`` pairs at a time. Returns, for the ``B·P`` pairs in (b, p) order:
        ``pts1 [B·P,H,W,3]``, ``conf1 [B·P,H,W]`` (view 1), ``pts2``, ``conf2`` (view 2 in view 1's
        frame) and ``feats {layer: [B·P,h,w,C]}`` (view-1 decoder tokens of block ``layer``).
        """
        B, S, _, H, W = img.shape
        h, w = H // 16, W // 16
        chunk = self.config.pair_batch_size
        dtype = _DTYPES[self.config.dtype]
        autocast = torch.autocast(device_type=img.device.type, dtype=dtype, enabled=dtype != torch.float32)
        flat = img.reshape(B * S, 3, H, W)
        with autocast:
            encoded = [self.model.encode(flat[i : i + chunk]) for i in range(0, B * S, chunk)]
        enc = torch.cat([e for e, _ in encoded]).reshape(B, S, h * w, -1)
        pos = encoded[0][1][:1]  # [1,N,2], the same for every frame
        enc1 = enc[:, first].reshape(B * len(first), h * w, -1)
        enc2 = enc[:, second].reshape(B * len(second), h * w, -1)
        out = {"pts1": [], "conf1": [], "pts2": [], "conf2": [], "feats": {layer: [] for layer in layers}}
        for i in range(0, enc1.shape[0], chunk):
            e1, e2 = enc1[i : i + chunk], enc2[i : i + chunk]
            p = pos.expand(e1.shape[0], -1, -1)
            with autocast:
                tokens1, tokens2 = self.model.decode(e1, p, e2, p)
            pred1, pred2 = self.model.heads(DecoderOutput(tokens1, tokens2, p, p, (H, W), (H, W)))
            out["pts1"].append(pred1["pts3d"])
            out["conf1"].append(pred1["conf"])
            out["pts2"].append(pred2["pts3d_in_other_view"])
            out["conf2"].append(pred2["conf"])
            for layer in layers:
                out["feats"][layer].append(tokens1[layer + 1].float().reshape(-1, h, w, tokens1[layer + 1].shape[-1]))
        cat = {k: torch.cat(v) for k, v in out.items() if k != "feats"}
        cat["feats"] = {k: torch.cat(v) for k, v in out["feats"].items()}
        return cat

    def _oneref(self, img: Tensor, layers: tuple[int, ...]) -> tuple[dict, dict]:
        """Anchor pairing: pairs ``(a(i), i)`` for i in 0..S-1, then ``(i, a(i))`` for i in 1..S-1
        (img ``[B,S,3,H,W]``). Returns the :func:`frames_from_pairs` outputs and the features."""
        B, S = img.shape[:2]
        anchor = anchors(S, self.config.pairing, self.config.keyframe_interval)
        first = [anchor[i] for i in range(S)] + list(range(1, S))
        second = list(range(S)) + [anchor[i] for i in range(1, S)]
        res = self._run_pairs(img, first, second, layers)
        P = len(first)

        def split(t: Tensor) -> tuple[Tensor, Tensor]:
            t = t.reshape(B, P, *t.shape[1:])
            fwd = t[:, :S]
            bwd = torch.cat([t[:, :1], t[:, S:]], dim=1)  # frame 0's own view = pair (0, 0)
            return fwd, bwd

        pts1_f, pts1_b = split(res["pts1"])
        conf1_f, conf1_b = split(res["conf1"])
        pts2_f, _ = split(res["pts2"])
        conf2_f, _ = split(res["conf2"])
        geo = frames_from_pairs(
            {"pts1": pts1_f, "conf1": conf1_f, "pts2": pts2_f, "conf2": conf2_f},
            {"pts1": pts1_b, "conf1": conf1_b},
            anchor,
            focal_iters=self.config.focal_iters,
        )
        return geo, {layer: split(f)[1].contiguous() for layer, f in res["feats"].items()}

    def _global(self, img: Tensor, layers: tuple[int, ...]) -> tuple[dict, dict]:
        """Global alignment over ``config.graph`` (img ``[B,S,3,H,W]``, S >= 2). Frame ``k``'s features
        are its view-1 tokens from its most confident pair ``(k, m)`` (largest mean view-1 confidence)."""
        B, S = img.shape[:2]
        c = self.config
        edges = make_edges(S, c.graph)
        res = self._run_pairs(img, [i for i, _ in edges], [j for _, j in edges], layers)
        E = len(edges)

        def per_video(t: Tensor) -> Tensor:  # [B·E,...] → [B,E,...]
            return t.reshape(B, E, *t.shape[1:])

        conf1 = per_video(res["conf1"]).float()
        geo = global_align(
            edges,
            per_video(res["pts1"]).float(),
            per_video(res["pts2"]).float(),
            conf1,
            per_video(res["conf2"]).float(),
            S,
            niter=c.niter,
            lr=c.lr,
            lr_min=c.lr_min,
            schedule=c.schedule,
            focal_iters=c.focal_iters,
        )
        first = torch.tensor([i for i, _ in edges], device=conf1.device)
        score = conf1.mean((2, 3))  # [B,E]
        own = torch.stack([score.masked_fill(first[None] != k, -torch.inf).argmax(1) for k in range(S)], 1)  # [B,S]
        rows = torch.arange(B, device=own.device)[:, None]
        feats = {layer: per_video(f)[rows, own].contiguous() for layer, f in res["feats"].items()}
        return geo, feats

    @torch.no_grad()
    def encode(self, frames: Tensor, layers=None, *, batch: Batch | None = None) -> TeacherOutput:
        """frames ``[B,S,3,H,W]`` in [0,1] → :class:`TeacherOutput` at the working resolution:
        features ``{l: [B,S,h,w,C]}``, depth/depth_conf ``[B,S,H',W']``, pose_enc ``[B,S,9]``,
        intrinsics ``[B,S,3,3]``, extrinsics ``[B,S,3,4]`` (camera 0 = identity), points ``[B,S,H',W',3]``."""
        layers = tuple(self.layers if layers is None else layers)
        bad = [layer for layer in layers if not 0 <= layer < self.num_layers]
        if bad:
            raise ValueError(f"feature layers {bad} outside 0..{self.num_layers - 1}")
        B, S = frames.shape[:2]
        device = next(self.model.parameters()).device
        img = preprocess(
            frames.reshape(B * S, *frames.shape[2:]).to(device),
            self.config.image_size,
            self.config.square_ok,
            self.config.crop,
        )
        H, W = img.shape[-2:]
        img = img.reshape(B, S, 3, H, W)
        if self.config.alignment == "global" and S > 2:  # 1-2 frames: the pair itself, as DUSt3R's demo
            geo, features = self._global(img, layers)
        else:
            geo, features = self._oneref(img, layers)
        focal = geo["focal"].float()
        intrinsics = torch.zeros(B, S, 3, 3, device=device)
        intrinsics[..., 0, 0] = focal
        intrinsics[..., 1, 1] = focal
        intrinsics[..., 0, 2] = W / 2
        intrinsics[..., 1, 2] = H / 2
        intrinsics[..., 2, 2] = 1.0
        extrinsics = geo["extrinsics"].float()
        pose_enc = extri_intri_to_pose_encoding(extrinsics, intrinsics, (H, W))
        return TeacherOutput(
            features=features,
            depth=geo["depth"].float().clamp(min=1e-6),  # z <= 0 only happens with untrained weights
            depth_conf=geo["depth_conf"].float(),
            pose_enc=pose_enc,
            intrinsics=intrinsics,
            extrinsics=extrinsics,
            points=geo["points"].float(),
        )


def _weights_identity(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"


def load_teacher(config: DUSt3RTeacherConfig | None = None, device: str = "cpu") -> DUSt3RTeacher:
    """Build the teacher: the ``config.model_config`` network with ``config.pretrained`` weights
    (``""`` = random weights drawn from ``config.seed``), frozen, on ``device``. Invalid options raise
    :class:`geovr.errors.RecipeError`; weights problems :class:`geovr.errors.CheckpointError`."""
    config = config or DUSt3RTeacherConfig()
    problems = config.check()
    if problems:
        raise RecipeError([f"teacher: {p}" for p in problems])
    arch = config.arch()
    if config.pretrained:
        path = resolve_checkpoint(config.pretrained, revision=config.revision, cache_dir=config.cache_dir)
        with torch.device("meta"):
            model = AsymmetricCroCo3DStereo(arch)
        load_weights(model, path, allow_pickle=pickle_allowed(), assign=True)
        model = model.float()
        weights_id = _weights_identity(str(path))
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = AsymmetricCroCo3DStereo(arch)
        weights_id = f"random-init:seed={config.seed}"
    return DUSt3RTeacher(model.to(device), config, weights_id)


def build(config: DUSt3RTeacherConfig, context: BuildContext) -> DUSt3RTeacher:
    """Registered factory: ``build(config, context)`` → :class:`DUSt3RTeacher` on ``context.device``."""
    return load_teacher(config, device=getattr(context, "device", "cpu") or "cpu")
