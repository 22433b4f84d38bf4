"""Ground-truth displacement fields of the pretraining pool's videos.

The pool (:mod:`lib.data.synth_pool`) is rendered from known object trajectories, so for any
frame ``f`` and reference frame ``c`` of a video the exact backward displacement is known: the
point shown at pixel ``p`` of frame ``f`` sits at ``p + D(p)`` in frame ``c``. The stand-in VAE's
pretraining supervises its decoder's displacement field with it (``VAELossWeights.motion``), the
way optical-flow networks learn from synthetic scenes: from pixels alone a few thousand CPU
steps never taught the zero-initialised field to follow the objects.

Conventions (those of :mod:`lib.data.synth_render`): x right, y down, origin at the top-left
pixel corner, pixel centres at ``+0.5``; ``D`` is in pixels, channel 0 = x, 1 = y, the layout
``lib.vae.decoder.warp_frame`` samples with. For a pixel of object ``k`` (the topmost one drawn
there) with offset ``d`` from the object's centre (the wrapped copy nearest to it):
``D = (c_k(c) - c_k(f)) + (s_c / s_f) R(theta_c - theta_f) d - d + (cam_f - cam_c)``; for a
background pixel ``D = cam_f - cam_c`` (twitching distractors count as background). Occlusions
are not modelled: a point hidden in frame ``c`` still gets the displacement of its surface. An
object wrapping around a frame edge keeps a continuous displacement (its far side points past
the edge), the same as an object leaving a training crop.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lib.data.synth_pool import PoolScene
from lib.data.synth_style import FRAME_H, FRAME_W, transform_sprite

BACKGROUND = -1


def label_map(scene: PoolScene, frame: int) -> np.ndarray:
    """int8 (H, W): index of the topmost object covering each pixel of ``frame`` (alpha > 0.5,
    wrapped copies included), :data:`BACKGROUND` elsewhere."""
    labels = np.full((FRAME_H, FRAME_W), BACKGROUND, dtype=np.int8)
    for k, (master, m) in enumerate(scene.objects):  # back to front: later objects overwrite
        alpha = transform_sprite(master, size_px=float(m.base_px * m.scale[frame]),
                                 angle_deg=float(m.angle_deg[frame]))[..., 3] > 127
        h, w = alpha.shape
        cx, cy = (m.centre_xy[frame] - scene.camera_xy[frame]).tolist()
        for sx in (-FRAME_W, 0, FRAME_W):
            for sy in (-FRAME_H, 0, FRAME_H):  # same placement rule as synth_render.paste_sprite
                x0, y0 = int(np.floor(cx + sx - w / 2 + 0.5)), int(np.floor(cy + sy - h / 2 + 0.5))
                fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, FRAME_W), min(y0 + h, FRAME_H)
                if fx0 < fx1 and fy0 < fy1:
                    box = alpha[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
                    labels[fy0:fy1, fx0:fx1][box] = k
    return labels


def _wrap(v: np.ndarray, period: float) -> np.ndarray:
    """``v`` folded into [-period / 2, period / 2)."""
    return (v + period / 2) % period - period / 2


def displacement(scene: PoolScene, frame: int, reference: int, labels: np.ndarray | None = None) -> np.ndarray:
    """float32 (2, H, W): the backward displacement from ``frame`` to ``reference`` (module doc)."""
    labels = label_map(scene, frame) if labels is None else labels
    cam = scene.camera_xy.astype(np.float64)
    out = np.empty((2, FRAME_H, FRAME_W), dtype=np.float64)
    out[0], out[1] = cam[frame, 0] - cam[reference, 0], cam[frame, 1] - cam[reference, 1]
    ys, xs = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float64) + 0.5
    for k, (_, m) in enumerate(scene.objects):
        mask = labels == k
        if not mask.any():
            continue
        centre = m.centre_xy[frame] - cam[frame]
        dx, dy = _wrap(xs[mask] - centre[0], FRAME_W), _wrap(ys[mask] - centre[1], FRAME_H)
        ratio = m.scale[reference] / m.scale[frame]
        a = np.deg2rad(m.angle_deg[reference] - m.angle_deg[frame])
        ca, sa = np.cos(a), np.sin(a)
        shift = m.centre_xy[reference] - m.centre_xy[frame]
        shift = np.array([_wrap(shift[0], FRAME_W), _wrap(shift[1], FRAME_H)])
        out[0][mask] += shift[0] + ratio * (ca * dx - sa * dy) - dx
        out[1][mask] += shift[1] + ratio * (sa * dx + ca * dy) - dy
    return out.astype(np.float32)


def clip_displacements(scene: PoolScene, frame_indices: list[int], *, size: tuple[int, int]) -> torch.Tensor:
    """float16 (T, 2, h, w): each frame's displacement to the clip's content frame
    (index ``(T - 1) // 2``), area-averaged to ``size`` and scaled to its pixels (the bank's
    resize of the whole 240x320 frame)."""
    reference = frame_indices[(len(frame_indices) - 1) // 2]
    fields = torch.from_numpy(np.stack([displacement(scene, f, reference) for f in frame_indices]))  # (T, 2, H, W)
    small = F.interpolate(fields, size=size, mode="area")
    small[:, 0] *= size[1] / FRAME_W
    small[:, 1] *= size[0] / FRAME_H
    return small.half()
