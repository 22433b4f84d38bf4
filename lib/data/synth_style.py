"""Appearance of the synthetic action dataset: group styles, background textures, sprites.

A *group* (UCF101's ``gXX``) is a scene: its background texture and colours, the object's shape,
colour and size, the distractors, the camera shake, the sensor noise and a speed factor are all
drawn from ``(dataset seed, group)`` only, never from the class. Every class of a group therefore
shares one look, one frame cannot tell the class, and a classifier has to read the motion and
generalise to the unseen looks of the test groups. Per-video variation (colour jitter, positions,
angles, sizes) is added in :mod:`lib.data.synth_render`.

Shapes are asymmetric (letters, flags, irregular blobs, all with an off-centre accent dot and a
stripe), so a rotation is visible and its direction can be told apart.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

FRAME_W, FRAME_H = 320, 240  # UCF101's frame size
CAMERA_PAD = 8  # margin of the background canvas around the frame: camera shake crops inside it
MASTER_PX = 192  # the object sprite is drawn once at this size and downscaled each frame
_SUPERSAMPLE = 2  # sprites are drawn at 2x and downsampled: anti-aliased edges without a renderer

# Arbitrary constants that separate the random streams derived from one dataset seed.
GROUP_DOMAIN = 0x5EED_0001

# Asymmetric polygon templates in unit coordinates (x right, y down), none rotationally symmetric.
_TEMPLATES: dict[str, tuple[tuple[float, float], ...]] = {
    "arrow": ((-1, -0.35), (0.0, -0.35), (0.0, -0.85), (1, 0), (0.0, 0.85), (0.0, 0.35), (-1, 0.35)),
    "L": ((-0.7, -1), (0.0, -1), (0.0, 0.3), (0.8, 0.3), (0.8, 1), (-0.7, 1)),
    "F": ((-0.7, -1), (0.8, -1), (0.8, -0.45), (0.0, -0.45), (0.0, -0.1), (0.6, -0.1),
          (0.6, 0.4), (0.0, 0.4), (0.0, 1), (-0.7, 1)),
    "flag": ((-0.75, -1), (0.9, -0.45), (-0.25, 0.1), (-0.25, 1), (-0.75, 1)),
    "boot": ((-0.6, -1), (0.15, -1), (0.15, 0.1), (0.9, 0.3), (0.9, 1), (-0.6, 1)),
}
SHAPE_KINDS: tuple[str, ...] = (*_TEMPLATES, "blob")
TEXTURE_KINDS: tuple[str, ...] = ("clouds", "stripes", "checker", "blobs")


@dataclass(frozen=True, eq=False)
class SpriteStyle:
    """How one object looks: polygon (unit circle, centred), colours (HSV in [0, 1]), accents."""

    shape: str
    vertices: np.ndarray  # (V, 2) float, max radius 1, centre of rotation at (0, 0)
    fill_hsv: tuple[float, float, float]
    outline_value: float  # brightness of the outline: opposite of the fill's
    accent_xy: tuple[float, float]  # off-centre accent dot, unit coordinates
    accent_radius: float
    stripe_angle_deg: float


@dataclass(frozen=True, eq=False)
class DistractorStyle:
    """A distractor of a group: static, or twitching by at most ``jitter_px`` (never a class motion)."""

    sprite: SpriteStyle
    size_px: float
    jitter_px: float


@dataclass(frozen=True, eq=False)
class GroupStyle:
    """Everything a group's videos share, whatever their class."""

    group: int
    texture: str
    dark_background: bool
    background: np.ndarray  # (FRAME_H + 2 CAMERA_PAD, FRAME_W + 2 CAMERA_PAD, 3) uint8, read-only
    object_sprite: SpriteStyle
    object_base_px: float  # object size (sprite box side) at scale 1
    distractors: tuple[DistractorStyle, ...]
    noise_sigma: float  # std of the per-frame Gaussian sensor noise, in 0-255 units
    camera_jitter_px: float  # amplitude of the smooth camera shake
    speed_factor: float  # multiplies every motion speed of the group


def hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    """HSV in [0, 1] (hue wraps) -> RGB uint8 triple."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return round(r * 255), round(g * 255), round(b * 255)


# ---------------------------------------------------------------------------------------------
# Shapes and sprites
# ---------------------------------------------------------------------------------------------
def _sample_vertices(rng: np.random.Generator, shape: str) -> np.ndarray:
    """A polygon of kind ``shape``, randomly stretched/mirrored, centred, max radius 1."""
    if shape == "blob":
        # Irregular star-convex polygon: random radii make it asymmetric in general.
        n = int(rng.integers(5, 10))
        angles = np.sort((np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n))
        radii = rng.uniform(0.55, 1.0, n)
        radii[int(rng.integers(n))] = 1.0  # one long arm: a clear orientation cue
        vertices = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    else:
        vertices = np.asarray(_TEMPLATES[shape], dtype=np.float64)
        vertices = vertices * np.array([rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)])
        if rng.random() < 0.5:
            vertices[:, 0] *= -1  # mirror: letters seen both ways
    vertices = vertices - (vertices.min(axis=0) + vertices.max(axis=0)) / 2  # box centre = rotation centre
    return vertices / np.linalg.norm(vertices, axis=1).max()


def sample_sprite_style(rng: np.random.Generator, *, dark_background: bool, shape: str | None = None) -> SpriteStyle:
    """A sprite look that stands out from a dark or a light background."""
    shape = shape or SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
    vertices = _sample_vertices(rng, shape)
    value = rng.uniform(0.8, 1.0) if dark_background else rng.uniform(0.15, 0.4)
    fill_hsv = (float(rng.random()), float(rng.uniform(0.55, 1.0)), float(value))
    accent_angle = rng.uniform(0, 2 * np.pi)
    accent_dist = rng.uniform(0.25, 0.45)
    return SpriteStyle(
        shape=shape,
        vertices=vertices,
        fill_hsv=fill_hsv,
        outline_value=0.08 if dark_background else 0.95,
        accent_xy=(float(np.cos(accent_angle) * accent_dist), float(np.sin(accent_angle) * accent_dist)),
        accent_radius=float(rng.uniform(0.15, 0.25)),
        stripe_angle_deg=float(rng.uniform(0, 180)),
    )


def draw_sprite(style: SpriteStyle, *, size_px: int,
                hsv_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Image.Image:
    """Render ``style`` as a ``size_px`` square RGBA image (polygon centre at the image centre).

    ``hsv_shift`` adds per-video colour variation. Transparent pixels carry the outline colour so
    bilinear/bicubic resampling later never pulls black fringes into the edge.
    """
    side = size_px * _SUPERSAMPLE
    h, s, v = (a + b for a, b in zip(style.fill_hsv, hsv_shift))
    fill = hsv_to_rgb(h, s, v)
    outline = hsv_to_rgb(h, 0.3, style.outline_value)
    accent = hsv_to_rgb(h + 0.5, 0.9, 1.0 - v)  # complementary hue, opposite brightness
    line_w = max(2, round(0.07 * side))
    half = side / 2
    points = [tuple(p) for p in (style.vertices * (half - line_w) + half)]

    paint = Image.new("RGB", (side, side), fill)
    draw = ImageDraw.Draw(paint)
    theta = np.deg2rad(style.stripe_angle_deg)
    direction = np.array([np.cos(theta), np.sin(theta)]) * side
    offset = np.array([-np.sin(theta), np.cos(theta)]) * 0.15 * side  # off-centre stripe
    a, b = (half + offset - direction), (half + offset + direction)
    draw.line([tuple(a), tuple(b)], fill=accent, width=max(2, round(0.09 * side)))
    ax, ay = (np.asarray(style.accent_xy) * (half - line_w) + half)
    r = style.accent_radius * half
    draw.ellipse([ax - r, ay - r, ax + r, ay + r], fill=outline)
    draw.polygon(points, outline=outline, width=line_w)

    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).polygon(points, fill=255, outline=255, width=line_w)
    rgb = np.asarray(paint).copy()
    rgb[np.asarray(mask) == 0] = outline
    sprite = Image.fromarray(np.dstack([rgb, np.asarray(mask)]))
    return sprite.resize((size_px, size_px), Image.Resampling.LANCZOS)


def transform_sprite(master: Image.Image, *, size_px: float, angle_deg: float) -> np.ndarray:
    """Scale ``master`` to ``size_px`` and rotate it by ``angle_deg`` CLOCKWISE on screen.

    Returns RGBA uint8 (h, w, 4); the rotation centre stays at the array centre. PIL's positive
    angles turn counter-clockwise, hence the minus sign.
    """
    side = max(4, int(round(size_px)))
    image = master.resize((side, side), Image.Resampling.BILINEAR)
    if angle_deg % 360.0 != 0.0:
        image = image.rotate(-angle_deg, resample=Image.Resampling.BICUBIC, expand=True)
    return np.asarray(image)


# ---------------------------------------------------------------------------------------------
# Background textures
# ---------------------------------------------------------------------------------------------
def _value_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Smooth random field in ~[0, 1]: a coarse random grid upsampled bicubically (no loops)."""
    grid = rng.random((height // cell + 3, width // cell + 3), dtype=np.float32)
    big = Image.fromarray(grid).resize((grid.shape[1] * cell, grid.shape[0] * cell), Image.Resampling.BICUBIC)
    oy, ox = (int(rng.integers(cell)) for _ in range(2))  # random phase: grid lines fall anywhere
    return np.asarray(big)[oy:oy + height, ox:ox + width]


def _texture_field(rng: np.random.Generator, kind: str, height: int, width: int) -> np.ndarray:
    """A float32 field in [0, 1] of the given texture kind."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "clouds":
        field = sum(w * _value_noise(rng, height, width, c) for w, c in ((0.55, 48), (0.3, 20), (0.15, 8)))
    elif kind == "stripes":
        theta, period = rng.uniform(0, np.pi), rng.uniform(14, 40)
        warp = (_value_noise(rng, height, width, 64) - 0.5) * rng.uniform(1.0, 4.0)
        sharp = rng.uniform(0.8, 3.0)
        field = np.tanh(sharp * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + warp))
    elif kind == "checker":
        theta, cell = rng.uniform(0, np.pi / 2), rng.uniform(18, 44)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        field = np.tanh(rng.uniform(1.0, 4.0) * np.sin(np.pi * u / cell) * np.sin(np.pi * v / cell))
    elif kind == "blobs":
        # Gaussian bumps summed on a quarter-resolution grid (n x h/4 x w/4 broadcast), upsampled.
        n = int(rng.integers(12, 36))
        sh, sw = height // 4 + 1, width // 4 + 1
        cy, cx = rng.uniform(0, sh, n), rng.uniform(0, sw, n)
        sigma = rng.uniform(2.0, 8.0, n)
        gy, gx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        bumps = np.exp(-((gy[None] - cy[:, None, None]) ** 2 + (gx[None] - cx[:, None, None]) ** 2)
                       / (2 * sigma[:, None, None] ** 2)).sum(axis=0).astype(np.float32)
        field = np.asarray(Image.fromarray(bumps).resize((sw * 4, sh * 4), Image.Resampling.BILINEAR))
        field = field[:height, :width]
    else:
        raise ValueError(f"unknown texture kind {kind!r}; known: {TEXTURE_KINDS}")
    field = np.asarray(field, dtype=np.float32)
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)


def make_background(rng: np.random.Generator, *, kind: str, dark: bool) -> np.ndarray:
    """A textured background canvas larger than the frame (CAMERA_PAD each side), uint8 RGB."""
    height, width = FRAME_H + 2 * CAMERA_PAD, FRAME_W + 2 * CAMERA_PAD
    field = _texture_field(rng, kind, height, width)
    hue, sat = rng.random(), rng.uniform(0.1, 0.6)
    # Moderate contrast only: the textured background must not drown the object.
    if dark:
        v1, v2 = rng.uniform(0.12, 0.28), rng.uniform(0.3, 0.5)
    else:
        v1, v2 = rng.uniform(0.55, 0.7), rng.uniform(0.72, 0.92)
    c1 = np.array(hsv_to_rgb(hue, sat, v1), dtype=np.float32)
    c2 = np.array(hsv_to_rgb(hue + rng.uniform(-0.15, 0.15), sat * rng.uniform(0.5, 1.2), v2), dtype=np.float32)
    canvas = c1 + (c2 - c1) * field[..., None]
    canvas += rng.normal(0.0, rng.uniform(0.0, 4.0), canvas.shape).astype(np.float32)  # static grain
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=32)  # a worker renders many videos of one group: build it once
def group_style(seed: int, group: int, domain: int = GROUP_DOMAIN) -> GroupStyle:
    """The style of ``group`` under dataset ``seed`` (pure, cached; class-independent by design).

    ``domain`` names the random stream: the labelled dataset draws from :data:`GROUP_DOMAIN`, the
    unlabelled pretraining pool (:mod:`lib.data.synth_pool`) from its own, so no seed can make a
    pool group look like a labelled one.
    """
    background_rng, object_rng, distractor_rng, misc_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, domain, group]).spawn(4))
    dark = bool(misc_rng.random() < 0.5)
    texture = TEXTURE_KINDS[int(misc_rng.integers(len(TEXTURE_KINDS)))]
    background = make_background(background_rng, kind=texture, dark=dark)
    background.flags.writeable = False  # shared by every video of the group: never draw into it
    object_base_px = float(object_rng.uniform(64, 84))
    distractors = tuple(
        DistractorStyle(
            sprite=sample_sprite_style(distractor_rng, dark_background=dark),
            size_px=float(object_base_px * distractor_rng.uniform(0.35, 0.6)),
            jitter_px=float(distractor_rng.uniform(1.0, 3.0)) if distractor_rng.random() < 0.5 else 0.0,
        )
        for _ in range(int(distractor_rng.integers(0, 5)))
    )
    return GroupStyle(
        group=group,
        texture=texture,
        dark_background=dark,
        background=background,
        object_sprite=sample_sprite_style(object_rng, dark_background=dark),
        object_base_px=object_base_px,
        distractors=distractors,
        noise_sigma=float(misc_rng.uniform(0.0, 4.0)),  # more mostly costs bitrate: noise dominates the stream
        camera_jitter_px=float(misc_rng.uniform(0.0, 5.0)),
        speed_factor=float(np.exp(misc_rng.uniform(np.log(0.8), np.log(1.25)))),
    )
