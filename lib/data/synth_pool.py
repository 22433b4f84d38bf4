"""The unlabelled pretraining pool of the stand-in VAE: synthetic scenes with continuous motion.

Reducio was pretrained on footage that is not UCF101, then frozen; the embedded study mirrors
that. The stand-in VAE learns from this pool (plus the real natural footage of
:mod:`lib.data.natural`), and the classifiers never see it. How the pool differs from the
labelled dataset of :mod:`lib.data.synth`:

- **no classes**: every object's motion is drawn from continuous distributions (a velocity of
  any direction and speed, an elliptic oscillation, gravity hops, a rotation rate, a growth rate
  and a size oscillation, each present or absent at random), so the ten labelled motions are
  points inside a much larger space, never its modes;
- **one to three objects** per video, each with its own motion and z-order;
- **its own appearance groups**: styles come from :func:`lib.data.synth_style.group_style` with
  the pool's own stream domain :data:`POOL_DOMAIN` and the pool's seed, so no pool group can
  look like a labelled group, whatever seeds are chosen;
- **its own video streams**: :data:`POOL_VIDEO_DOMAIN` + ``(seed, group, clip)``.

Videos are the labelled set's format (320x240, 25 fps, XVID ``.avi``), written under
``videos/p_gXX_cYYY.avi`` with the same resumable, atomic generator
(:func:`lib.data.synth.write_videos`) and a ``synth_manifest.json`` naming this generator.

CLI: ``python -m lib.data synth --preset pretrain --out data/synth_pretrain``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib.data.errors import DataError
from lib.data.synth_render import (
    FPS,
    NOISE_PAD,
    SCALE_RANGE,
    Sprite,
    camera_path,
    noise_bank,
    paste_sprite,
)
from lib.data.synth_style import (
    CAMERA_PAD,
    FRAME_H,
    FRAME_W,
    MASTER_PX,
    GroupStyle,
    draw_sprite,
    group_style,
    sample_sprite_style,
    transform_sprite,
)

POOL_GENERATOR_VERSION = 1  # bump whenever the rendered bytes change: old folders are then refused
POOL_DOMAIN = 0x5EED_0010  # appearance-group stream of the pool (the labelled set uses GROUP_DOMAIN)
POOL_VIDEO_DOMAIN = 0x5EED_0011  # per-video streams of the pool
POOL_VIDEO_DIR = "videos"
DEFAULT_POOL_SEED = 1  # the labelled default uses seed 0; the domains keep them apart anyway


@dataclass(frozen=True)
class PoolPreset:
    """Size of a pretraining pool. Frame size, fps and codec are the labelled set's."""

    name: str
    groups: int  # appearance groups 1..groups
    videos_per_group: int
    duration_s: tuple[float, float]  # a video's length, uniform per video
    objects: tuple[int, int]  # inclusive range of moving objects per video

    def __post_init__(self) -> None:
        if not 1 <= self.groups <= 99 or not 1 <= self.videos_per_group <= 999:
            raise ValueError(f"groups must be in 1..99 and videos_per_group in 1..999, got {self.groups}, "
                             f"{self.videos_per_group}")
        if not 1.0 <= self.duration_s[0] <= self.duration_s[1]:
            raise ValueError(f"duration_s must satisfy 1.0 <= lo <= hi, got {self.duration_s}")
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise ValueError(f"objects must satisfy 1 <= lo <= hi, got {self.objects}")


POOL_PRESETS: dict[str, PoolPreset] = {
    p.name: p for p in (
        # The stand-in VAE's pretraining pool: 2,000 videos, ~7,000 one-second clips.
        PoolPreset("pretrain", groups=80, videos_per_group=25, duration_s=(2.0, 5.0), objects=(1, 3)),
        # Tests and smoke runs: seconds to generate.
        PoolPreset("pretrain_smoke", groups=3, videos_per_group=2, duration_s=(1.2, 2.0), objects=(1, 2)),
    )
}


def get_pool_preset(preset: str | PoolPreset) -> PoolPreset:
    if isinstance(preset, PoolPreset):
        return preset
    if preset not in POOL_PRESETS:
        raise DataError(None, f"unknown pretraining-pool preset {preset!r}", f"use one of {', '.join(POOL_PRESETS)}")
    return POOL_PRESETS[preset]


# --------------------------------------------------------------------------------------------------
# Motion
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ObjectMotion:
    """Per-frame state of one object (frame pixels of the 320x240 frame; angle clockwise on screen)."""

    centre_xy: np.ndarray  # (T, 2), wrapped into the frame
    angle_deg: np.ndarray  # (T,)
    scale: np.ndarray  # (T,) drawn size = base_px * scale
    base_px: float


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold ``x`` into [lo, hi] by reflection at the bounds (a continuous triangle wave)."""
    span = hi - lo
    u = np.mod(x - lo, 2 * span)
    return lo + np.where(u > span, 2 * span - u, u)


def draw_motion(rng: np.random.Generator, t: np.ndarray, *, base_px: float) -> ObjectMotion:
    """One object's continuous motion: every component present or absent at random, every
    parameter drawn from a continuous range (see the module docstring)."""
    n = len(t)
    position = np.array([rng.uniform(0, FRAME_W), rng.uniform(0, FRAME_H)])
    centre = np.tile(position, (n, 1))
    if rng.random() < 0.85:  # drift: any direction, 15-160 px/s (log-uniform)
        speed, heading = np.exp(rng.uniform(np.log(15.0), np.log(160.0))), rng.uniform(0, 2 * np.pi)
        centre = centre + np.outer(t, speed * np.array([np.cos(heading), np.sin(heading)]))
    if rng.random() < 0.5:  # elliptic oscillation (lines, ellipses and orbits of any direction)
        amplitude, freq = rng.uniform(0.0, 60.0, 2), rng.uniform(0.4, 2.0)
        phase = rng.uniform(0, 2 * np.pi, 2)
        centre = centre + amplitude * np.sin(2 * np.pi * freq * t[:, None] + phase)
    if rng.random() < 0.2:  # gravity hops
        height, period = rng.uniform(20.0, 90.0), rng.uniform(0.4, 1.0)
        u = (rng.random() + t / period) % 1.0
        centre[:, 1] -= 4.0 * height * u * (1.0 - u)
    angle = np.full(n, rng.uniform(0.0, 360.0))
    if rng.random() < 0.65:  # rotation, either sense, 30-220 deg/s
        angle = angle + rng.choice([-1.0, 1.0]) * rng.uniform(30.0, 220.0) * t
    log_lo, log_hi = np.log(SCALE_RANGE[0]), np.log(SCALE_RANGE[1])
    log_scale = np.full(n, rng.uniform(log_lo, log_hi))
    if rng.random() < 0.5:  # growth or shrinkage, reflected at the size bounds
        log_scale = log_scale + rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.6) * t
    if rng.random() < 0.2:  # pulsing size
        log_scale = log_scale + rng.uniform(0.05, 0.25) * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t
                                                                   + rng.uniform(0, 2 * np.pi))
    centre = np.mod(centre, [FRAME_W, FRAME_H])  # wrap around the frame edges, like translations
    return ObjectMotion(centre_xy=centre, angle_deg=angle, scale=np.exp(_reflect(log_scale, log_lo, log_hi)),
                        base_px=float(base_px))


# --------------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolVideoSpec:
    """One pool video: appearance group, clip number, pool seed, length range and object range."""

    group: int
    clip: int
    seed: int = DEFAULT_POOL_SEED
    duration_s: tuple[float, float] = (2.0, 5.0)
    objects: tuple[int, int] = (1, 3)

    @property
    def relpath(self) -> str:
        return f"{POOL_VIDEO_DIR}/p_g{self.group:02d}_c{self.clip:03d}.avi"

    def rngs(self) -> dict[str, np.random.Generator]:
        key = [self.seed, POOL_VIDEO_DOMAIN, self.group, self.clip]
        names = ("timing", "motion", "appearance", "camera", "distractors", "noise")
        return {n: np.random.default_rng(s) for n, s in zip(names, np.random.SeedSequence(key).spawn(len(names)))}

    @property
    def num_frames(self) -> int:
        lo, hi = (int(round(d * FPS)) for d in self.duration_s)
        return int(self.rngs()["timing"].integers(lo, hi + 1))

    def style(self) -> GroupStyle:
        return group_style(self.seed, self.group, POOL_DOMAIN)

    def scene(self) -> PoolScene:
        return sample_pool_scene(self)

    def render_frames(self) -> np.ndarray:
        """All frames (T, 240, 320, 3) uint8 RGB."""
        return np.stack(list(iter_pool_frames(self.scene())))


@dataclass(frozen=True, eq=False)
class PoolScene:
    """Everything needed to render one pool video (built by :func:`sample_pool_scene`)."""

    canvas: np.ndarray  # background with the static distractors baked in
    objects: tuple[tuple[object, ObjectMotion], ...]  # (RGBA master image, motion), back to front
    twitching: tuple[tuple[Sprite, np.ndarray], ...]
    camera_xy: np.ndarray  # (T, 2) int camera offsets
    noise: np.ndarray | None
    noise_offsets: np.ndarray  # (T, 2)

    @property
    def n_frames(self) -> int:
        return len(self.camera_xy)


def sample_pool_scene(spec: PoolVideoSpec) -> PoolScene:
    """Draw every random choice of a pool video: objects, motions, distractors, camera, noise."""
    rngs, style = spec.rngs(), spec.style()
    n = spec.num_frames
    t = np.arange(n, dtype=np.float64) / FPS
    appearance, motion = rngs["appearance"], rngs["motion"]
    n_objects = int(appearance.integers(spec.objects[0], spec.objects[1] + 1))
    objects = []
    for k in range(n_objects):
        # The group's object first, then per-video extra objects (their own shapes and colours).
        sprite_style = style.object_sprite if k == 0 else sample_sprite_style(appearance,
                                                                               dark_background=style.dark_background)
        hsv_shift = (appearance.uniform(-0.03, 0.03), appearance.uniform(-0.08, 0.08), appearance.uniform(-0.06, 0.06))
        base_px = style.object_base_px * (appearance.uniform(0.9, 1.1) if k == 0 else appearance.uniform(0.5, 0.9))
        master = draw_sprite(sprite_style, size_px=MASTER_PX, hsv_shift=hsv_shift)
        objects.append((master, draw_motion(motion, t, base_px=base_px)))
    order = appearance.permutation(n_objects)

    canvas = style.background.copy()
    twitching = []
    d_rng = rngs["distractors"]
    for d in style.distractors:
        sprite = Sprite.from_rgba(transform_sprite(draw_sprite(d.sprite, size_px=int(round(d.size_px))),
                                                   size_px=d.size_px, angle_deg=d_rng.uniform(0, 360)))
        m = d.size_px / 2 + d.jitter_px + 2
        anchor = np.array([d_rng.uniform(m, FRAME_W - m), d_rng.uniform(m, FRAME_H - m)])
        if d.jitter_px > 0:
            twitching.append((sprite, anchor + np.rint(d_rng.uniform(-d.jitter_px, d.jitter_px, (n, 2)))))
        else:
            paste_sprite(canvas, sprite, anchor[0] + CAMERA_PAD, anchor[1] + CAMERA_PAD)
    noise_rng = rngs["noise"]
    sigma = style.noise_sigma * noise_rng.uniform(0.8, 1.2)
    return PoolScene(
        canvas=canvas, objects=tuple(objects[i] for i in order), twitching=tuple(twitching),
        camera_xy=camera_path(rngs["camera"], t, style.camera_jitter_px),
        noise=np.rint(noise_bank() * sigma).astype(np.int16) if sigma >= 0.5 else None,
        noise_offsets=noise_rng.integers(0, NOISE_PAD + 1, (n, 2)))


def iter_pool_frames(scene: PoolScene):  # -> Iterator[np.ndarray]
    """Yield the frames (240, 320, 3) uint8 RGB of a pool scene, back-to-front compositing."""
    wrap_shifts = [(sx, sy) for sx in (-FRAME_W, 0, FRAME_W) for sy in (-FRAME_H, 0, FRAME_H)]
    for i in range(scene.n_frames):
        cam_x, cam_y = (int(c) for c in scene.camera_xy[i])
        frame = scene.canvas[CAMERA_PAD + cam_y:CAMERA_PAD + cam_y + FRAME_H,
                             CAMERA_PAD + cam_x:CAMERA_PAD + cam_x + FRAME_W].copy()
        for sprite, centres in scene.twitching:
            paste_sprite(frame, sprite, centres[i, 0] - cam_x, centres[i, 1] - cam_y)
        for master, m in scene.objects:
            obj = Sprite.from_rgba(transform_sprite(master, size_px=float(m.base_px * m.scale[i]),
                                                    angle_deg=float(m.angle_deg[i])))
            cx, cy = m.centre_xy[i, 0] - cam_x, m.centre_xy[i, 1] - cam_y
            for sx, sy in wrap_shifts:  # an object crossing an edge shows on both sides
                paste_sprite(frame, obj, cx + sx, cy + sy)
        if scene.noise is not None:
            oy, ox = (int(o) for o in scene.noise_offsets[i])
            noisy = frame.astype(np.int16)
            noisy += scene.noise[oy:oy + FRAME_H, ox:ox + FRAME_W]
            frame = np.clip(noisy, 0, 255).astype(np.uint8)
        yield frame


# --------------------------------------------------------------------------------------------------
# The pool on disk
# --------------------------------------------------------------------------------------------------
def pool_specs(preset: str | PoolPreset = "pretrain", *, seed: int = DEFAULT_POOL_SEED) -> list[PoolVideoSpec]:
    """Every video of the pool, sorted by group then clip."""
    preset = get_pool_preset(preset)
    return [PoolVideoSpec(group, clip, seed=int(seed), duration_s=preset.duration_s, objects=preset.objects)
            for group in range(1, preset.groups + 1) for clip in range(1, preset.videos_per_group + 1)]


def pool_settings(preset: PoolPreset, seed: int) -> dict[str, Any]:
    """What determines the bytes of a pool (the manifest's identity; JSON round-tripped)."""
    from lib.data.synth import CODEC

    return json.loads(json.dumps({
        "generator": "lib.data.synth_pool", "generator_version": POOL_GENERATOR_VERSION, "preset": asdict(preset),
        "seed": int(seed), "frame_size": [FRAME_W, FRAME_H], "fps": FPS, "codec": CODEC,
        "style_domain": POOL_DOMAIN, "video_domain": POOL_VIDEO_DOMAIN,
    }))


def pool_is_complete(root: str | os.PathLike[str], *, preset: str | PoolPreset = "pretrain",
                     seed: int = DEFAULT_POOL_SEED) -> bool:
    from lib.data.synth import MANIFEST_NAME

    root, preset = Path(root), get_pool_preset(preset)
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    settings = pool_settings(preset, seed)
    return (bool(manifest.get("complete")) and all(manifest.get(k) == v for k, v in settings.items())
            and all((root / s.relpath).is_file() for s in pool_specs(preset, seed=seed)))


def generate_pool(out: str | os.PathLike[str], *, preset: str | PoolPreset = "pretrain", seed: int = DEFAULT_POOL_SEED,
                  workers: int | None = None, progress: bool = True) -> Path:
    """Write (or finish) the pretraining pool under ``out``; resumable, atomic per video."""
    from lib.data.synth import write_videos

    preset = get_pool_preset(preset)
    if isinstance(seed, bool) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    root = Path(out).expanduser().absolute()
    specs = pool_specs(preset, seed=seed)
    return write_videos(root, settings=pool_settings(preset, seed), tasks=[(s, str(root / s.relpath)) for s in specs],
                        num_frames=[s.num_frames for s in specs], finish=lambda: None,
                        is_done=lambda: pool_is_complete(root, preset=preset, seed=seed), workers=workers,
                        progress=progress, desc=f"synth {preset.name}")


def ensure_pool(preset: str = "pretrain", seed: int = DEFAULT_POOL_SEED, root: str | os.PathLike[str] | None = None,
                *, workers: int | None = None, progress: bool = True) -> Path:
    """The pool's root (default ``data/synth_<preset>``), generated only if not complete."""
    from lib.paths import synthetic_dataset_dir

    root_path = Path(root).expanduser().absolute() if root is not None else synthetic_dataset_dir(preset)
    if pool_is_complete(root_path, preset=preset, seed=seed):
        return root_path
    return generate_pool(root_path, preset=preset, seed=seed, workers=workers, progress=progress)


def pool_video_paths(root: str | os.PathLike[str]) -> list[Path]:
    """The pool's videos in spec order, read from its manifest (refuses an unfinished pool)."""
    from lib.data.errors import DatasetError
    from lib.data.synth import MANIFEST_NAME

    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(root, f"no readable pretraining-pool manifest ({err})",
                           "generate it: python -m lib.data synth --preset pretrain --out " + str(root)) from None
    if manifest.get("generator") != "lib.data.synth_pool" or not manifest.get("complete"):
        raise DatasetError(root, "is not a finished pretraining pool",
                           "rerun python -m lib.data synth --preset pretrain --out " + str(root) + " to finish it")
    preset = PoolPreset(**{**manifest["preset"], "duration_s": tuple(manifest["preset"]["duration_s"]),
                           "objects": tuple(manifest["preset"]["objects"])})
    return [root / s.relpath for s in pool_specs(preset, seed=int(manifest["seed"]))]
