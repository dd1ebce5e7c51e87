"""Where the visual tokens of each frame sit, and how geometry tokens are spliced in after them.

LLaVA-OneVision's video path (transformers ``LlavaOnevisionModel.get_video_features``) turns a video of
S frames into ``S·h·w + 1`` consecutive ``<video>`` placeholder tokens: frame s's ``h×w`` grid
(SigLIP patches after the projector and a 2× bilinear pooling, ``h = w = ceil(patches/2)``) in
row-major order, frames one after the other, then a single ``image_newline`` token closing the video.

With geometry tokens the sequence becomes (``V`` a visual token, ``C`` a camera token, ``N`` the
newline token, ``Z`` the scale token)::

    ... V·(h·w) C  V·(h·w) C  ...  V·(h·w) C  N Z ...

i.e. one camera token right after each frame's grid and one scale token after the whole video.
Inserted positions attend and are attended causally like any other token; position ids stay the
HF default (consecutive over the new sequence).
"""

from __future__ import annotations

import attrs
import torch

from geovr.errors import DataError

#: input id written at inserted positions in :attr:`TokenLayout.input_ids` (not a vocabulary id).
CAMERA_ID = -1
SCALE_ID = -2


@attrs.frozen
class TokenLayout:
    """Token positions of a batch, in the (possibly spliced) sequence of length ``T'``.

    source: ``[B,T']`` original position of each token, ``-1`` at inserted ones.
    input_ids: ``[B,T']`` original ids, :data:`CAMERA_ID` / :data:`SCALE_ID` at inserted positions.
    visual: ``[B,S,h*w]`` positions of each frame's visual tokens (row-major over the ``h×w`` grid).
    camera: ``[B,S]`` camera-token positions or ``None``; scale: ``[B]`` scale-token positions or ``None``.
    """

    source: torch.Tensor
    input_ids: torch.Tensor
    visual: torch.Tensor
    camera: torch.Tensor | None
    scale: torch.Tensor | None


def video_starts(input_ids: torch.Tensor, video_token_id: int, num_frames: int, tokens_per_frame: int) -> torch.Tensor:
    """First ``<video>`` position of each row of ``input_ids`` ``[B,T]`` → ``[B]``.

    Raises :class:`DataError` unless every row holds exactly one contiguous run of
    ``num_frames·tokens_per_frame + 1`` video tokens.
    """
    expected = num_frames * tokens_per_frame + 1
    is_video = input_ids == video_token_id
    counts = is_video.sum(1)
    starts = is_video.int().argmax(1)
    T = input_ids.shape[1]
    run = (starts[:, None] + torch.arange(expected, device=input_ids.device)).clamp(max=T - 1)
    ok = (counts == expected) & (starts + expected <= T) & is_video.gather(1, run).all(1)
    if not bool(ok.all()):  # one host sync in the common case
        b = int((~ok).nonzero()[0])
        raise DataError(
            f"sample {b}: expected one run of {expected} <video> tokens ({num_frames} frames × "
            f"{tokens_per_frame} + 1 newline), found {int(counts[b])}; the processor and the model "
            f"config disagree on the video grid"
        )
    return starts


def build_layout(
    input_ids: torch.Tensor, video_token_id: int, num_frames: int, grid: tuple[int, int], *, camera: bool, scale: bool
) -> TokenLayout:
    """Compute the token layout of ``input_ids`` ``[B,T]`` with optional camera/scale insertion."""
    B, T = input_ids.shape
    S, hw = num_frames, grid[0] * grid[1]
    device = input_ids.device
    start = video_starts(input_ids, video_token_id, S, hw)  # [B]
    frame_offsets = torch.arange(S, device=device) * hw
    visual_orig = start[:, None, None] + frame_offsets[None, :, None] + torch.arange(hw, device=device)
    after = []  # insert after these
    if camera:
        after.append(start[:, None] + frame_offsets[None] + hw - 1)  # [B,S] last token of frame
    if scale:
        after.append((start + S * hw)[:, None])  # [B,1] the newline token
    if not after:
        return TokenLayout(
            source=torch.arange(T, device=device).expand(B, T),
            input_ids=input_ids,
            visual=visual_orig,
            camera=None,
            scale=None,
        )
    after = torch.cat(after, 1)  # [B,K] increasing
    K = after.shape[1]
    arange = torch.arange(T, device=device)
    shift = (after[:, None, :] < arange[None, :, None]).sum(-1)  # [B,T] inserts before i
    new_pos = arange[None] + shift
    inserted = after + torch.arange(K, device=device)[None] + 1  # [B,K]
    source = torch.full((B, T + K), -1, dtype=torch.long, device=device)
    source.scatter_(1, new_pos, arange.expand(B, T))
    ids = input_ids.gather(1, source.clamp(min=0))
    cam_pos = inserted[:, :S] if camera else None
    scale_pos = inserted[:, -1] if scale else None
    if cam_pos is not None:
        ids = ids.scatter(1, cam_pos, CAMERA_ID)
    if scale_pos is not None:
        ids = ids.scatter(1, scale_pos[:, None], SCALE_ID)
    visual = visual_orig + shift.gather(1, visual_orig.flatten(1)).view(B, S, hw)
    return TokenLayout(source=source, input_ids=ids, visual=visual, camera=cam_pos, scale=scale_pos)


def splice(
    values: torch.Tensor,
    layout: TokenLayout,
    fill,
    *,
    camera: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Re-order ``values`` ``[B,T,...]`` into the layout ``[B,T',...]``.

    Inserted positions get ``fill`` (a scalar), or the rows of ``camera`` ``[B,S,...]`` / ``scale``
    ``[B,...]`` when given (differentiable in ``values``, ``camera`` and ``scale``).
    """
    B, Tn = layout.source.shape
    extra = values.shape[2:]
    idx = layout.source.clamp(min=0).view(B, Tn, *([1] * len(extra))).expand(B, Tn, *extra)
    out = values.gather(1, idx)
    out = torch.where(
        (layout.source < 0).view(B, Tn, *([1] * len(extra))),
        torch.as_tensor(fill, dtype=out.dtype, device=out.device),
        out,
    )
    if camera is not None and layout.camera is not None:
        pos = layout.camera.view(B, -1, *([1] * len(extra))).expand(B, layout.camera.shape[1], *extra)
        out = out.scatter(1, pos, camera.to(out.dtype))
    if scale is not None and layout.scale is not None:
        pos = layout.scale.view(B, 1, *([1] * len(extra))).expand(B, 1, *extra)
        out = out.scatter(1, pos, scale[:, None].to(out.dtype))
    return out


def gather_grid(hidden: torch.Tensor, layout: TokenLayout, grid: tuple[int, int]) -> torch.Tensor:
    """Visual tokens of ``hidden`` ``[B,T',D]`` as grids ``[B,S,h,w,D]``."""
    B, S, hw = layout.visual.shape
    D = hidden.shape[-1]
    flat = hidden.gather(1, layout.visual.reshape(B, S * hw, 1).expand(B, S * hw, D))
    return flat.view(B, S, grid[0], grid[1], D)
