"""Geometry-token layout of the Qwen-VL backbones (where camera/scale tokens go, and their RoPE).

Tokens are inserted only when a :class:`GeometryRequest` asks for them. The sequence is extended with:

* one **camera token** right after the last visual token of each frame (``S`` in total), embedding
  ``camera_tokens(0)`` for frame 0 (the reference frame) and ``camera_tokens(1)`` for the others;
* one **scale token** right after the last frame's camera token (or its last visual token),
  embedding ``scale_token(0)``.

In a ragged batch (samples with different frame counts) each sample gets its own ``S_b`` camera tokens;
samples with fewer inserted tokens are padded at the end (attention mask 0, label ``-100``).

Inserted tokens have label ``-100`` and attention mask 1, and are never visual positions, so Qwen3-VL
deepstack features are added only at the visual tokens (zero at inserted positions).

Multimodal RoPE positions (``(t, h, w)`` triples) of the extended sequence: every original token keeps
its HF position (from the model's own ``get_rope_index``), except that tokens after the scale token
are shifted by +1 on all three axes. The camera token of frame ``f`` sits in that frame's time slice
just past its grid: ``(t_f, max h_f + 1, max w_f + 1)``; the scale token is placed like a text token
following the whole video: ``(m + 1, m + 1, m + 1)`` with ``m`` the largest position component of any
visual token of the sample.
"""

from __future__ import annotations

import torch

from geovr.errors import GeovrError
from geovr.protocols import GeometryRequest

#: Marker ids of inserted tokens in :func:`geometry_layout` ``input_ids``.
CAMERA_ID, SCALE_ID = -1, -2


def geometry_layout(
    input_ids: torch.Tensor, position_ids: torch.Tensor, video_token_id: int, grid, geometry: GeometryRequest
) -> dict:
    """Where geometry tokens go in a sequence.

    ``input_ids`` ``[B,L]`` holds ``S_b·h_b·w_b`` ``video_token_id`` tokens per sample (frame-major);
    ``position_ids`` ``[3,B,L]`` are its HF M-RoPE positions; ``grid`` = ``(S, h, w)`` merged tokens, or a
    list of ``B`` such triples when samples differ (ragged batch). Returns ``src`` ``[B,L']`` (index of
    each new position in the original sequence, ``-1`` for inserted tokens), ``input_ids`` ``[B,L']``
    (original ids, :data:`CAMERA_ID`/:data:`SCALE_ID` at inserted tokens), ``kind`` ``[B,L']`` (0 original,
    1 first-frame camera, 2 other camera, 3 scale, 4 padding after a sample that received fewer inserted
    tokens than the longest), ``position_ids`` ``[3,B,L']``, ``camera_index`` ``[B,S]`` (a list of ``B``
    ``[S_b]`` tensors for a ragged batch) and ``scale_index`` ``[B]`` (positions in the new sequence,
    ``None`` when not inserted). ``L' = L + max_b K_b`` with ``K_b = S_b·camera + scale``.
    """
    ids, pos = input_ids, position_ids
    B, L = ids.shape
    grids = list(grid) if isinstance(grid, list) else [tuple(grid)] * B
    if len(grids) != B:
        raise GeovrError(f"geometry_layout: {len(grids)} grids for a batch of {B}")
    Ks = [S * int(geometry.camera_tokens) + int(geometry.scale_token) for S, _, _ in grids]
    K = max(Ks)
    vmask = ids == video_token_id
    dev = ids.device
    src = torch.full((B, L + K), -1, dtype=torch.long, device=dev)
    kind = torch.zeros((B, L + K), dtype=torch.long, device=dev)
    new_pos = torch.zeros((3, B, L + K), dtype=pos.dtype, device=dev)
    ar = torch.arange(L, device=dev)
    cam_rows = []
    for b in range(B):
        S, h, w = grids[b]
        per_frame = h * w
        Kb = Ks[b]
        vp = vmask[b].nonzero().flatten()
        if vp.numel() != S * per_frame:
            raise GeovrError(f"sample {b}: {vp.numel()} video tokens, expected S*h*w = {S}*{h}*{w}")
        p = pos[:, b]
        vis = p[:, vp].view(3, S, per_frame)
        after, kinds, kpos = [], [], []
        if geometry.camera_tokens:
            mx = vis.max(-1).values  # [3,S]
            after.append(vp.view(S, per_frame)[:, -1])
            kinds.append(torch.full((S,), 2, device=dev).index_fill(0, torch.tensor([0], device=dev), 1))
            kpos.append(torch.stack([mx[0], mx[1] + 1, mx[2] + 1]))
        shift = torch.zeros(L, dtype=pos.dtype, device=dev)
        if geometry.scale_token:
            m = vis.max() + 1
            after.append(vp[-1:])
            kinds.append(torch.full((1,), 3, device=dev))
            kpos.append(m.view(1, 1).expand(3, 1))
            shift = (ar > vp[-1]).to(pos.dtype)
        if Kb == 0:
            src[b, :L], new_pos[:, b, :L] = ar, p
            continue
        after, kinds, kpos = torch.cat(after), torch.cat(kinds), torch.cat(kpos, 1)
        order = torch.argsort(after * 4 + kinds)  # by insertion point, camera before scale
        after, kinds, kpos = after[order], kinds[order], kpos[:, order]
        new_orig = ar + torch.searchsorted(after, ar, side="left")
        new_ins = after + 1 + torch.arange(Kb, device=dev)
        src[b, new_orig] = ar
        kind[b, new_ins] = kinds
        new_pos[:, b, new_orig] = p + shift
        new_pos[:, b, new_ins] = kpos
        if Kb < K:
            kind[b, L + Kb :] = 4
            new_pos[:, b, L + Kb :] = new_pos[:, b, L + Kb - 1 : L + Kb] + 1
        if geometry.camera_tokens:
            cam_rows.append(((kind[b] == 1) | (kind[b] == 2)).nonzero().flatten())
    gathered = ids.gather(1, src.clamp(min=0))
    new_ids = torch.where(kind == 3, SCALE_ID, torch.where((kind > 0) & (kind < 4), CAMERA_ID, gathered))
    camera_index = None
    if geometry.camera_tokens:
        same = len({int(r.numel()) for r in cam_rows}) == 1
        camera_index = torch.stack(cam_rows) if same else cam_rows
    return {
        "src": src.masked_fill(kind > 0, -1),
        "kind": kind,
        "input_ids": new_ids,
        "position_ids": new_pos,
        "camera_index": camera_index,
        "scale_index": (kind == 3).nonzero()[:, 1] if geometry.scale_token else None,
    }
