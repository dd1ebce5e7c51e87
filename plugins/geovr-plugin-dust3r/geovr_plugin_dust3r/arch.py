"""Architecture description of AsymmetricCroCo3DStereo (DUSt3R), torch-free.

:class:`DUSt3RArch` holds every size the model needs. :meth:`DUSt3RArch.from_dict` accepts the
dict layout of the reference ``tiny_config.json`` (top-level sizes, DPT sizes under ``"dpt"``);
purely informative keys (``description``, ``note``, parameter counts, ...) are ignored, anything
else unknown is an error. :data:`OFFICIAL` is ``DUSt3R_ViTLarge_BaseDecoder_512_dpt``
(ViT-L encoder 1024×24, ViT-B decoder 768×12, DPT heads, RoPE base 100).
"""

from __future__ import annotations

import math
from typing import Any

import attrs

#: keys of a config dict that describe rather than configure (ignored by ``from_dict``).
INFO_KEYS = frozenset(
    {
        "description",
        "note",
        "param_count_unique",
        "state_dict_entries",
        "official_for_comparison",
        "patch_embed_cls",
        "landscape_only",
        "head_type",
        "output_mode",
        "img_size",
    }
)


def _mode(value) -> tuple[str, float, float]:
    """``("exp", "-inf", "inf")`` → ``("exp", -inf, inf)`` (JSON stores infinities as strings)."""
    name, lo, hi = value
    return str(name), float(lo), float(hi)


@attrs.frozen
class DPTArch:
    """DPT head sizes. ``hooks``: indices into the decoder token list ``[enc, dec_1..dec_D]``;
    ``dim_tokens``: channels of the hooked tokens; ``layer_dims``: widths after ``act_postprocess``;
    ``feature_dim``: fusion width; ``last_dim``: width before the final 1×1 conv; ``num_channels``:
    output channels (3 for xyz + 1 confidence)."""

    hooks: tuple[int, ...] = (0, 6, 9, 12)
    dim_tokens: tuple[int, ...] = (1024, 768, 768, 768)
    layer_dims: tuple[int, ...] = (96, 192, 384, 768)
    feature_dim: int = 256
    last_dim: int = 128
    num_channels: int = 4
    patch_size: int = 16


@attrs.frozen
class DUSt3RArch:
    """All sizes of the model (defaults = the official ViT-L/ViT-B DPT 512 checkpoint)."""

    patch_size: int = 16
    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    dec_embed_dim: int = 768
    dec_depth: int = 12
    dec_num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    pos_embed: str = "RoPE100"
    depth_mode: tuple[str, float, float] = ("exp", -math.inf, math.inf)
    conf_mode: tuple[str, float, float] = ("exp", 1.0, math.inf)
    dpt: DPTArch = DPTArch()

    @property
    def rope_base(self) -> float:
        """Frequency base of the 2D RoPE (``"RoPE100"`` → 100)."""
        return float(self.pos_embed[len("RoPE") :])

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | None = None) -> DUSt3RArch:
        """Build from a ``tiny_config.json``-style dict (``None`` → official configuration)."""
        if cfg is None:
            return cls()
        if isinstance(cfg, DUSt3RArch):
            return cfg
        fields = {f.name for f in attrs.fields(cls)}
        unknown = sorted(k for k in cfg if k not in fields and k not in INFO_KEYS)
        if unknown:
            raise ValueError(f"unknown DUSt3R config keys {unknown}; expected some of {sorted(fields)}")
        kwargs = {k: v for k, v in cfg.items() if k in fields}
        pos = kwargs.get("pos_embed", "RoPE100")
        if not str(pos).startswith("RoPE"):
            raise ValueError(f"pos_embed {pos!r} is not supported (only 'RoPE<base>', e.g. 'RoPE100')")
        if cfg.get("head_type", "dpt") != "dpt" or cfg.get("output_mode", "pts3d") != "pts3d":
            raise ValueError("only head_type='dpt' with output_mode='pts3d' is supported")
        for key in ("depth_mode", "conf_mode"):
            if key in kwargs:
                kwargs[key] = _mode(kwargs[key])
        dec_depth = int(kwargs.get("dec_depth", 12))
        enc_dim = int(kwargs.get("enc_embed_dim", 1024))
        dec_dim = int(kwargs.get("dec_embed_dim", 768))
        dpt = dict(cfg.get("dpt") or {})
        dpt.setdefault("hooks", [0, dec_depth * 2 // 4, dec_depth * 3 // 4, dec_depth])
        dpt.setdefault("dim_tokens", [enc_dim, dec_dim, dec_dim, dec_dim])
        dpt = {k: tuple(v) if isinstance(v, list) else v for k, v in dpt.items()}
        kwargs["dpt"] = DPTArch(**dpt)
        arch = cls(**kwargs)
        problems = arch.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return arch

    def problems(self) -> list[str]:
        """Inconsistencies between the sizes (empty when the architecture is buildable)."""
        out = []
        if self.enc_embed_dim % self.enc_num_heads or self.dec_embed_dim % self.dec_num_heads:
            out.append("embedding dims must be divisible by the number of heads")
        for name, dim, heads in (
            ("encoder", self.enc_embed_dim, self.enc_num_heads),
            ("decoder", self.dec_embed_dim, self.dec_num_heads),
        ):
            if (dim // heads) % 4:
                out.append(f"{name} head dim {dim // heads} must be a multiple of 4 for 2D RoPE")
        if self.dpt.patch_size != 16 or self.patch_size != 16:
            out.append("the DPT head assumes a 16-pixel patch")
        if len(self.dpt.hooks) != 4 or max(self.dpt.hooks) > self.dec_depth:
            out.append(f"dpt.hooks {self.dpt.hooks} must be 4 indices in 0..{self.dec_depth}")
        expected = tuple(self.enc_embed_dim if h == 0 else self.dec_embed_dim for h in self.dpt.hooks)
        if tuple(self.dpt.dim_tokens) != expected:
            out.append(f"dpt.dim_tokens {self.dpt.dim_tokens} do not match the hooked tokens {expected}")
        return out


#: ``DUSt3R_ViTLarge_BaseDecoder_512_dpt``.
OFFICIAL = DUSt3RArch()

#: The tiny test architecture of the reference data (365,688 parameters).
TINY = DUSt3RArch(
    enc_embed_dim=48,
    enc_depth=2,
    enc_num_heads=3,
    dec_embed_dim=32,
    dec_depth=4,
    dec_num_heads=2,
    dpt=DPTArch(
        hooks=(0, 2, 3, 4), dim_tokens=(48, 32, 32, 32), layer_dims=(8, 16, 32, 32), feature_dim=16, last_dim=8
    ),
)

PRESETS = {"official": OFFICIAL, "vitl_512_dpt": OFFICIAL, "tiny": TINY}
