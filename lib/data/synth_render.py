"""Motions, ground-truth trajectories and frame rendering of the synthetic action dataset.

A class is a MOTION of one foreground object (see :data:`MOTION_CLASSES`); the look comes from the
group (:mod:`lib.data.synth_style`) plus per-video variation. Everything is a pure function of a
:class:`VideoSpec`: its random streams come from ``SeedSequence([seed, VIDEO_DOMAIN, crc32(class),
group, clip])``, so a video is identical whichever process renders it, and in whatever order.

Coordinates are image coordinates: x to the right, y DOWN, origin at the top-left pixel corner,
in pixels of the 320x240 frame. ``angle_deg`` is the object's rotation from its drawn rest pose,
positive CLOCKWISE AS SEEN ON SCREEN (with y down that is the direction of increasing
``atan2(dy, dx)``): ``RotateClockwise`` increases it, ``RotateCounterClockwise`` decreases it.

Motions are chosen to be unambiguous inside any 1-second clip: translations wrap around the frame
edges (the object never stops at a border), growing/shrinking is a sawtooth with a 1.6-3.75 s
period (a clip shows mostly the class's direction and at most one reset), a bounce period is
under 0.9 s (each clip holds a floor contact and an apex) and an orbit period is at most 2 s (at
least half a turn per clip). Distractors are static or twitch by a few pixels at random, so they
never perform a class motion.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lib.data.synth_style import (
    CAMERA_PAD,
    FRAME_H,
    FRAME_W,
    MASTER_PX,
    GroupStyle,
    draw_sprite,
    group_style,
    transform_sprite,
)

FPS = 25  # UCF101's frame rate
MOTION_CLASSES: tuple[str, ...] = (
    "MoveLeft", "MoveRight", "MoveUp", "MoveDown",
    "RotateClockwise", "RotateCounterClockwise",
    "Grow", "Shrink", "Bounce", "Orbit",
)
VIDEO_DOMAIN = 0x5EED_0002  # separates per-video streams from the group streams
SCALE_RANGE = (0.65, 1.5)  # object scale of every class, so a single frame's size tells nothing
NOISE_PAD = 32  # the noise bank is larger than the frame; each frame reads a random crop of it
_TRANSLATION = {"MoveLeft": (-1, 0), "MoveRight": (1, 0), "MoveUp": (0, -1), "MoveDown": (0, 1)}


@dataclass(frozen=True)
class VideoSpec:
    """One video to render: which class/group/clip under which dataset seed and length range."""

    class_name: str
    group: int
    clip: int
    seed: int = 0
    duration_s: tuple[float, float] = (2.0, 8.0)  # the video's length is drawn uniformly in it

    def __post_init__(self) -> None:
        if self.class_name not in MOTION_CLASSES:
            raise ValueError(f"unknown class {self.class_name!r}; known: {MOTION_CLASSES}")

    @property
    def file_name(self) -> str:
        """UCF101 name, e.g. ``v_MoveLeft_g08_c01.avi``."""
        return f"v_{self.class_name}_g{self.group:02d}_c{self.clip:02d}.avi"

    @property
    def relpath(self) -> str:
        """``<ClassDir>/<file_name>``, as in the split lists."""
        return f"{self.class_name}/{self.file_name}"


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Per-frame ground truth of the object (see the module docstring for the conventions)."""

    time_s: np.ndarray  # (T,) frame times, i / FPS
    centre_xy: np.ndarray  # (T, 2) object centre in scene coordinates (wrapped into the frame for translations)
    angle_deg: np.ndarray  # (T,) clockwise-on-screen rotation from the rest pose
    scale: np.ndarray  # (T,) drawn size = base_px * scale
    base_px: float  # sprite box side at scale 1
    camera_xy: np.ndarray  # (T, 2) int camera offset: frame pixel (u, v) shows scene point (u + cx, v + cy)
    wraps: bool  # translations wrap around the frame edges

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return len(self.time_s)

    @property
    def drawn_centre_xy(self) -> np.ndarray:
        """(T, 2) centre in frame pixels after the camera shake."""
        return self.centre_xy - self.camera_xy


@dataclass(frozen=True, eq=False)
class Sprite:
    """A sprite ready to composite: float32 colour and alpha (in [0, 1])."""

    rgb: np.ndarray  # (h, w, 3)
    alpha: np.ndarray  # (h, w, 1)

    @classmethod
    def from_rgba(cls, rgba: np.ndarray) -> Sprite:
        rgba = rgba.astype(np.float32)
        return cls(rgb=rgba[..., :3], alpha=rgba[..., 3:] * (1.0 / 255.0))


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything needed to render one video (built by :func:`sample_scene`)."""

    spec: VideoSpec
    style: GroupStyle
    trajectory: Trajectory
    object_master: Image.Image  # RGBA, MASTER_PX square, per-video colours
    canvas: np.ndarray  # background with the static distractors baked in (read-only)
    twitching: tuple[tuple[Sprite, np.ndarray], ...]  # (sprite, (T, 2) scene centres) per twitching distractor
    noise: np.ndarray | None  # int16 (FRAME_H + pad, FRAME_W + pad, 3), None when negligible
    noise_offsets: np.ndarray  # (T, 2) int crop offsets into ``noise``


@dataclass(frozen=True, eq=False)
class RenderedVideo:
    """Frames (T, 240, 320, 3) uint8 RGB and their ground truth."""

    frames: np.ndarray
    trajectory: Trajectory


def _video_rngs(spec: VideoSpec) -> dict[str, np.random.Generator]:
    """Independent streams per purpose, so e.g. the length never shifts the appearance draws."""
    key = [spec.seed, VIDEO_DOMAIN, zlib.crc32(spec.class_name.encode()), spec.group, spec.clip]
    names = ("timing", "motion", "appearance", "camera", "distractors", "noise")
    return {n: np.random.default_rng(s) for n, s in zip(names, np.random.SeedSequence(key).spawn(len(names)))}


def video_num_frames(spec: VideoSpec) -> int:
    """The video's frame count (its length drawn in ``spec.duration_s``, at FPS)."""
    lo, hi = (int(round(d * FPS)) for d in spec.duration_s)
    return int(_video_rngs(spec)["timing"].integers(lo, hi + 1))


def camera_path(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """Smooth shake (two sinusoids per axis, random frequencies and phases), whole pixels."""
    amplitude *= rng.uniform(0.7, 1.3)
    axes = []
    for _ in range(2):
        f1, f2 = rng.uniform(0.3, 1.2), rng.uniform(1.5, 3.0)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        axes.append(amplitude * (np.sin(2 * np.pi * f1 * t + p1) + 0.5 * np.sin(2 * np.pi * f2 * t + p2)) / 1.5)
    return np.clip(np.rint(np.stack(axes, axis=1)), -CAMERA_PAD, CAMERA_PAD).astype(np.int64)


def _motion(class_name: str, rng: np.random.Generator, t: np.ndarray, *, base_px: float,
            speed: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre (T, 2), angle_deg (T,), scale (T,)) of ``class_name``; ``speed`` is the group factor."""
    n = len(t)
    # Log-uniform, like the geometric grow/shrink ramps: every class has the same size marginal.
    scale = np.full(n, np.exp(rng.uniform(*np.log(SCALE_RANGE))))
    angle = np.full(n, rng.uniform(0.0, 360.0))

    def margin(s: float) -> float:  # keeps the whole object (and the camera shake) inside the frame
        return base_px * s / 2 + CAMERA_PAD + 2

    def position(m: float) -> tuple[float, float]:
        return rng.uniform(m, FRAME_W - m), rng.uniform(m, FRAME_H - m)

    if class_name in _TRANSLATION:
        dx, dy = _TRANSLATION[class_name]
        x0, y0 = position(margin(scale[0]))
        x0, y0 = (rng.uniform(0, FRAME_W), y0) if dx else (x0, rng.uniform(0, FRAME_H))
        v = rng.uniform(50.0, 100.0) * speed  # 40-125 px/s: 1.6-5 px per frame
        centre = np.stack([(x0 + dx * v * t) % FRAME_W, (y0 + dy * v * t) % FRAME_H], axis=1)
    elif class_name in ("RotateClockwise", "RotateCounterClockwise"):
        omega = rng.uniform(90.0, 180.0) * speed * (1 if class_name == "RotateClockwise" else -1)
        centre = np.tile(position(margin(scale[0])), (n, 1))
        angle = angle + omega * t
    elif class_name in ("Grow", "Shrink"):
        s_min, s_max = rng.uniform(SCALE_RANGE[0], 0.72), rng.uniform(1.38, SCALE_RANGE[1])
        period = rng.uniform(2.0, 3.0) / speed
        frac = (rng.random() + t / period) % 1.0  # sawtooth with a random phase
        # Geometric ramp: constant relative growth rate, so every part of the ramp is as visible.
        scale = s_min * (s_max / s_min) ** frac if class_name == "Grow" else s_max * (s_min / s_max) ** frac
        centre = np.tile(position(margin(s_max)), (n, 1))
    elif class_name == "Bounce":
        m = margin(scale[0])
        height = rng.uniform(45.0, min(100.0, FRAME_H - 2 * m))
        x0, floor = rng.uniform(m, FRAME_W - m), rng.uniform(m + height, FRAME_H - m)
        period = float(np.clip(rng.uniform(0.5, 0.75) / speed, 0.45, 0.9))
        u = (rng.random() + t / period) % 1.0
        centre = np.stack([np.full(n, x0), floor - 4.0 * height * u * (1.0 - u)], axis=1)  # parabolic hops
    elif class_name == "Orbit":
        m = margin(scale[0])
        radius = rng.uniform(30.0, min(60.0, (FRAME_H - 2 * m) / 2 - 1))
        period = float(np.clip(rng.uniform(1.1, 1.8) / speed, 1.0, 2.0))
        direction = 1.0 if rng.random() < 0.5 else -1.0  # orbit direction is not part of the class
        cx, cy = rng.uniform(m + radius, FRAME_W - m - radius), rng.uniform(m + radius, FRAME_H - m - radius)
        phi = rng.uniform(0, 2 * np.pi) + direction * 2 * np.pi * t / period
        centre = np.stack([cx + radius * np.cos(phi), cy + radius * np.sin(phi)], axis=1)
    else:
        raise ValueError(f"unknown class {class_name!r}; known: {MOTION_CLASSES}")
    return centre.astype(np.float64), angle.astype(np.float64), np.asarray(scale, dtype=np.float64)


def _trajectory(spec: VideoSpec, rngs: dict[str, np.random.Generator], style: GroupStyle) -> Trajectory:
    """The trajectory, drawn from the timing/appearance/motion/camera streams of ``rngs``."""
    n = video_num_frames(spec)
    t = np.arange(n, dtype=np.float64) / FPS
    base_px = style.object_base_px * rngs["appearance"].uniform(0.9, 1.1)  # first appearance draw
    centre, angle, scale = _motion(spec.class_name, rngs["motion"], t, base_px=base_px, speed=style.speed_factor)
    return Trajectory(time_s=t, centre_xy=centre, angle_deg=angle, scale=scale, base_px=float(base_px),
                      camera_xy=camera_path(rngs["camera"], t, style.camera_jitter_px),
                      wraps=spec.class_name in _TRANSLATION)


def object_trajectory(spec: VideoSpec) -> Trajectory:
    """The ground-truth trajectory of ``spec``'s object (pure; what :func:`render_video` draws)."""
    return _trajectory(spec, _video_rngs(spec), group_style(spec.seed, spec.group))


def paste_sprite(frame: np.ndarray, sprite: Sprite, cx: float, cy: float) -> None:
    """Alpha-composite ``sprite`` centred at (cx, cy) into ``frame`` in place, clipped to it."""
    h, w = sprite.alpha.shape[:2]
    x0, y0 = int(np.floor(cx - w / 2 + 0.5)), int(np.floor(cy - h / 2 + 0.5))
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, frame.shape[1]), min(y0 + h, frame.shape[0])
    if fx0 >= fx1 or fy0 >= fy1:
        return
    region = frame[fy0:fy1, fx0:fx1]
    box = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    region[...] = (region + (sprite.rgb[box] - region) * sprite.alpha[box] + 0.5).astype(np.uint8)


def sample_scene(spec: VideoSpec) -> Scene:
    """Draw every random choice of ``spec``'s video: trajectory, colours, distractors, noise."""
    rngs = _video_rngs(spec)
    style = group_style(spec.seed, spec.group)
    trajectory = _trajectory(spec, rngs, style)
    n = trajectory.n_frames
    appearance = rngs["appearance"]
    hsv_shift = (appearance.uniform(-0.03, 0.03), appearance.uniform(-0.08, 0.08), appearance.uniform(-0.06, 0.06))
    object_master = draw_sprite(style.object_sprite, size_px=MASTER_PX, hsv_shift=hsv_shift)

    canvas = style.background.copy()
    twitching = []
    d_rng = rngs["distractors"]
    for d in style.distractors:
        sprite = Sprite.from_rgba(transform_sprite(draw_sprite(d.sprite, size_px=int(round(d.size_px))),
                                                    size_px=d.size_px, angle_deg=d_rng.uniform(0, 360)))
        m = d.size_px / 2 + d.jitter_px + 2
        anchor = np.array([d_rng.uniform(m, FRAME_W - m), d_rng.uniform(m, FRAME_H - m)])
        if d.jitter_px > 0:  # random per-frame twitch around a fixed anchor: no net motion
            offsets = np.rint(d_rng.uniform(-d.jitter_px, d.jitter_px, (n, 2)))
            twitching.append((sprite, anchor + offsets))
        else:  # static: drawn once into the canvas (canvas coordinates = scene + CAMERA_PAD)
            paste_sprite(canvas, sprite, anchor[0] + CAMERA_PAD, anchor[1] + CAMERA_PAD)
    canvas.flags.writeable = False

    noise_rng = rngs["noise"]
    sigma = style.noise_sigma * noise_rng.uniform(0.8, 1.2)
    noise = np.rint(noise_bank() * sigma).astype(np.int16) if sigma >= 0.5 else None
    noise_offsets = noise_rng.integers(0, NOISE_PAD + 1, (n, 2))
    return Scene(spec=spec, style=style, trajectory=trajectory, object_master=object_master, canvas=canvas,
                 twitching=tuple(twitching), noise=noise, noise_offsets=noise_offsets)


_NOISE_BANK: np.ndarray | None = None


def noise_bank() -> np.ndarray:
    """Unit Gaussian noise larger than the frame, made once per process from a fixed seed.

    Per-frame noise is a random crop of it: fresh-looking noise at the cost of a slice, instead of
    drawing 230k normals per frame.
    """
    global _NOISE_BANK
    if _NOISE_BANK is None:
        rng = np.random.default_rng(0x5EED_0003)
        _NOISE_BANK = rng.standard_normal((FRAME_H + NOISE_PAD, FRAME_W + NOISE_PAD, 3), dtype=np.float32)
    return _NOISE_BANK


def iter_frames(scene: Scene) -> Iterator[np.ndarray]:
    """Yield the video's frames, (240, 320, 3) uint8 RGB, one at a time (streams into the encoder)."""
    traj = scene.trajectory
    size_px = traj.base_px * traj.scale
    cached_key: tuple[float, float] | None = None
    obj: Sprite | None = None
    wrap_shifts = [(sx, sy) for sx in (-FRAME_W, 0, FRAME_W) for sy in (-FRAME_H, 0, FRAME_H)]
    if not traj.wraps:
        wrap_shifts = [(0, 0)]
    for i in range(traj.n_frames):
        cam_x, cam_y = (int(c) for c in traj.camera_xy[i])
        frame = scene.canvas[CAMERA_PAD + cam_y:CAMERA_PAD + cam_y + FRAME_H,
                             CAMERA_PAD + cam_x:CAMERA_PAD + cam_x + FRAME_W].copy()
        for sprite, centres in scene.twitching:
            paste_sprite(frame, sprite, centres[i, 0] - cam_x, centres[i, 1] - cam_y)
        key = (float(size_px[i]), float(traj.angle_deg[i]))
        if key != cached_key:  # translations/bounces/orbits reuse one transformed sprite
            obj = Sprite.from_rgba(transform_sprite(scene.object_master, size_px=key[0], angle_deg=key[1]))
            cached_key = key
        assert obj is not None
        cx, cy = traj.centre_xy[i, 0] - cam_x, traj.centre_xy[i, 1] - cam_y
        for sx, sy in wrap_shifts:  # a wrapping object shows on both sides while it crosses an edge
            paste_sprite(frame, obj, cx + sx, cy + sy)
        if scene.noise is not None:
            oy, ox = (int(o) for o in scene.noise_offsets[i])
            noisy = frame.astype(np.int16)
            noisy += scene.noise[oy:oy + FRAME_H, ox:ox + FRAME_W]
            frame = np.clip(noisy, 0, 255).astype(np.uint8)
        yield frame


def render_video(spec: VideoSpec) -> RenderedVideo:
    """All frames of ``spec`` (T, 240, 320, 3) uint8 RGB plus the ground-truth trajectory."""
    scene = sample_scene(spec)
    return RenderedVideo(frames=np.stack(list(iter_frames(scene))), trajectory=scene.trajectory)
