"""A procedural world of simple coloured objects, ray-cast analytically in batched PyTorch.

Every scene is one object centred at the origin (z up, the trainer's world):
a shape kind, a named body colour, optionally an accent (a second colour on a
part of the object: its ``top`` or a horizontal ``band``, a function of the
object-space height, see :data:`PATTERN_GEOMETRY`), a uniform scale and a
rotation about the vertical axis. Two splits: ``solid`` (one saturated colour,
the original world) and ``two-tone`` (a muted body colour with an accent).
Shapes are signed distance functions (SDFs, or conservative
lower bounds of them for the polytopes) in object units; rays are
sphere-traced inside a bounding sphere, shaded with a fixed world-space key
light from above-front, a weak fill light from behind and ambient light
(Lambert), supersampled 2x for antialiasing and composited over a solid
background colour per image.

Pixel centres sit at ``(u + 0.5, v + 0.5)`` and cameras follow OpenCV axes
(x right, y down, z forward), as :class:`nfsd_gs.cameras.Cameras` defines them.
Images are ``[B, H, W, 3]`` in [0, 1], like the trainer's renders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import Cameras
from ..errors import ConfigError

SHAPES: Tuple[str, ...] = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid")
#: The turn about the vertical axis after which each shape looks the same again, in degrees
#: (0: any turn; see the SDFs below: the round shapes depend on x and y only through
#: their radius, the cube and the square pyramid through |x| and |y|). Accents depend on
#: the height alone, so a two-tone object keeps its shape's symmetry.
YAW_PERIOD_DEG: Dict[str, float] = {"sphere": 0.0, "cube": 90.0, "cylinder": 0.0, "cone": 0.0,
                                    "torus": 0.0, "pyramid": 90.0}

#: Albedos of every named colour (linear-ish RGB in [0, 1]).
PALETTE: Dict[str, Tuple[float, float, float]] = {
    # saturated, well apart in hue: the solid split's body colours
    "red": (0.85, 0.10, 0.08),
    "orange": (0.98, 0.50, 0.05),
    "yellow": (0.95, 0.85, 0.10),
    "green": (0.12, 0.65, 0.15),
    "cyan": (0.10, 0.78, 0.85),
    "blue": (0.10, 0.22, 0.90),
    "purple": (0.50, 0.14, 0.72),
    "pink": (0.98, 0.50, 0.72),
    # muted, natural: the two-tone split's body colours
    "brown": (0.50, 0.30, 0.15),
    "olive": (0.50, 0.50, 0.18),
    "beige": (0.86, 0.77, 0.58),
    "slate": (0.38, 0.46, 0.60),
    # accent only
    "black": (0.06, 0.06, 0.06),
}
#: Body colours of the solid split (today's world, unchanged).
SOLID_COLOURS: Tuple[str, ...] = ("red", "orange", "yellow", "green", "cyan", "blue", "purple",
                                  "pink")
#: Body colours of the two-tone split: muted, so over-saturation shows.
MUTED_COLOURS: Tuple[str, ...] = ("brown", "olive", "beige", "slate")
#: Second colours of the two-tone split, each well apart from every muted body colour.
ACCENT_COLOURS: Tuple[str, ...] = ("black", "red", "blue", "yellow")
#: Where the accent sits: the upper part of the object, or a horizontal band.
PATTERNS: Tuple[str, ...] = ("top", "band")

#: Body colours (``Scenes.colour`` indexes this): the solid ones first, in today's order.
COLOURS: Dict[str, Tuple[float, float, float]] = {
    name: PALETTE[name] for name in SOLID_COLOURS + MUTED_COLOURS}
COLOUR_NAMES: Tuple[str, ...] = tuple(COLOURS)

#: Per shape, in object units (scale 1, z up): the height above which the ``top`` accent
#: starts, and the centre and half-height of the ``band`` accent. Chosen so that each
#: covers roughly a quarter to a third of a side view (cone and pyramid: their upper half).
PATTERN_GEOMETRY: Dict[str, Tuple[float, float, float]] = {
    #            top above, band centre, band half-height
    "sphere": (0.18, 0.00, 0.10),
    "cube": (0.10, 0.00, 0.08),
    "cylinder": (0.11, 0.00, 0.09),
    "cone": (0.00, -0.12, 0.10),
    "torus": (0.05, 0.00, 0.05),
    "pyramid": (0.00, -0.12, 0.09),
}

#: Uniform scale range of the objects; at scale 1 every shape fits a ball of radius ~0.5
#: (the trainer's Gaussians start in a ball of radius 0.5). Slightly larger than 1 on
#: average, so the objects cover more of the 64x64 frame.
SCALE_RANGE: Tuple[float, float] = (0.9, 1.2)
#: Radius (object units) of a sphere enclosing every shape at scale 1.
BOUNDING_RADIUS = 0.62

# World-space lights (unit vectors) and their weights: key from above-front (+x is the
# front view), fill from behind so back views are not just ambient.
_KEY_LIGHT = (0.55, 0.30, 0.78)
_FILL_LIGHT = (-0.75, -0.35, 0.25)
AMBIENT, KEY, FILL = 0.35, 0.65, 0.25

_TRACE_STEPS = 48
_HIT_EPSILON = 2e-3


SCENE_FIELDS = ("shape", "colour", "scale", "yaw_deg", "accent", "pattern")


@dataclass
class Scenes:
    """A batch of B one-object scenes."""

    shape: Tensor  # [B] long, index into SHAPES
    colour: Tensor  # [B] long, index into COLOUR_NAMES (the body colour)
    scale: Tensor  # [B] uniform scale (object units -> world units)
    yaw_deg: Tensor  # [B] rotation about +z (degrees, counter-clockwise from above)
    accent: Optional[Tensor] = None  # [B] long, index into ACCENT_COLOURS, -1: none (solid)
    pattern: Optional[Tensor] = None  # [B] long, index into PATTERNS, -1: none (solid)

    def __post_init__(self):
        none = torch.full_like(self.shape, -1)
        self.accent = none if self.accent is None else self.accent
        self.pattern = none.clone() if self.pattern is None else self.pattern

    def __len__(self) -> int:
        return self.shape.shape[0]

    def to(self, device: Union[torch.device, str]) -> "Scenes":
        return Scenes(*(getattr(self, f).to(device) for f in SCENE_FIELDS))

    def __getitem__(self, index) -> "Scenes":
        return Scenes(*(getattr(self, f)[index] for f in SCENE_FIELDS))

    @staticmethod
    def cat(parts: Sequence["Scenes"]) -> "Scenes":
        return Scenes(*(torch.cat([getattr(p, f) for p in parts]) for f in SCENE_FIELDS))


def name_index(kind: str, name: str, names: Sequence[str]) -> int:
    """Index of ``name`` among the world's ``names`` of a ``kind`` ("shape", "colour", ...)."""
    if name not in names:
        raise ConfigError(f"{kind} '{name}' is not one of {', '.join(names)}")
    return list(names).index(name)


#: What ``sample_scenes`` draws from: one split, or both (``two_tone_share`` of two-tone).
SCENE_SOURCES = ("solid", "two-tone", "both")


def sample_scenes(batch_size: int, generator: Optional[torch.Generator] = None,
                  split: str = "solid", two_tone_share: float = 0.5) -> Scenes:
    """B random scenes (CPU): uniform shape, body colour of the split, scale in
    SCALE_RANGE and yaw; two-tone scenes also a uniform accent colour and pattern.

    ``split="solid"`` draws exactly what the original world drew (same generator use).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    if split not in SCENE_SOURCES:
        raise ConfigError(f"split '{split}' is not one of {', '.join(SCENE_SOURCES)}")
    if split == "both":
        solid = sample_scenes(batch_size, generator, "solid")
        two_tone = sample_scenes(batch_size, generator, "two-tone")
        pick = torch.rand(batch_size, generator=generator) < two_tone_share  # [B] bool
        return Scenes(*(torch.where(pick, getattr(two_tone, f), getattr(solid, f))
                        for f in SCENE_FIELDS))
    low, high = SCALE_RANGE
    shape = torch.randint(len(SHAPES), (batch_size,), generator=generator)
    if split == "solid":
        colour = torch.randint(len(SOLID_COLOURS), (batch_size,), generator=generator)
        accent = pattern = None
    else:
        colour = len(SOLID_COLOURS) + torch.randint(len(MUTED_COLOURS), (batch_size,),
                                                    generator=generator)
        accent = torch.randint(len(ACCENT_COLOURS), (batch_size,), generator=generator)
        pattern = torch.randint(len(PATTERNS), (batch_size,), generator=generator)
    return Scenes(
        shape=shape, colour=colour,
        scale=low + (high - low) * torch.rand(batch_size, generator=generator),
        yaw_deg=360.0 * torch.rand(batch_size, generator=generator),
        accent=accent, pattern=pattern,
    )


# ---------------------------------------------------------------------------- SDFs
# Each takes points p [N, 3] in object units (scale 1) and returns distances [N].
# Polytopes (cone, pyramid) use the max of their half-space distances: exact on the
# faces, a lower bound elsewhere, which is all sphere tracing needs.


def sdf_sphere(p: Tensor) -> Tensor:
    return p.norm(dim=-1) - 0.42


def sdf_cube(p: Tensor) -> Tensor:
    q = p.abs() - 0.29
    return q.clamp(min=0).norm(dim=-1) + q.amax(dim=-1).clamp(max=0)


def sdf_cylinder(p: Tensor) -> Tensor:
    d = torch.stack([p[:, :2].norm(dim=-1) - 0.30, p[:, 2].abs() - 0.32], dim=-1)  # [N, 2]
    return d.clamp(min=0).norm(dim=-1) + d.amax(dim=-1).clamp(max=0)


def _slanted(radial: Tensor, z: Tensor, base: float, height: float) -> Tensor:
    """Signed distance to the side through (base, -height/2) and the apex (0, height/2)."""
    return ((radial - base) * height + (z + height / 2) * base) / math.hypot(height, base)


def sdf_cone(p: Tensor) -> Tensor:
    base, height = 0.38, 0.76
    side = _slanted(p[:, :2].norm(dim=-1), p[:, 2], base, height)
    return torch.maximum(side, -(p[:, 2] + height / 2))


def sdf_torus(p: Tensor) -> Tensor:
    q = torch.stack([p[:, :2].norm(dim=-1) - 0.30, p[:, 2]], dim=-1)  # [N, 2]
    return q.norm(dim=-1) - 0.12


def sdf_pyramid(p: Tensor) -> Tensor:
    base, height = 0.34, 0.70
    side_x = _slanted(p[:, 0].abs(), p[:, 2], base, height)
    side_y = _slanted(p[:, 1].abs(), p[:, 2], base, height)
    return torch.maximum(torch.maximum(side_x, side_y), -(p[:, 2] + height / 2))


SDFS = (sdf_sphere, sdf_cube, sdf_cylinder, sdf_cone, sdf_torus, sdf_pyramid)


def accent_mask(shape: str, pattern: Tensor, points: Tensor) -> Tensor:
    """Which surface points [M, 3] (object units) of ``shape`` wear the accent -> [M] bool.

    pattern [M] long (index into PATTERNS, -1: none). A function of the height z
    only, so it is unchanged by the yaw and holds on every view.
    """
    top_above, band_centre, band_half = PATTERN_GEOMETRY[shape]
    z = points[:, 2]
    top = (pattern == PATTERNS.index("top")) & (z > top_above)
    band = (pattern == PATTERNS.index("band")) & ((z - band_centre).abs() < band_half)
    return top | band


# ---------------------------------------------------------------------------- rays


def camera_rays(cameras: Cameras, resolution: int) -> Tuple[Tensor, Tensor]:
    """World-space ray origins [B, 3] and unit directions [B, R*R, 3] through pixel centres."""
    directions = cameras.ray_directions(resolution, resolution).float()  # [B, R, R, 3]
    return cameras.positions.float(), F.normalize(directions.flatten(1, 2), dim=-1)


def _yaw_matrices(yaw_deg: Tensor) -> Tensor:  # [B] -> [B, 3, 3] object -> world rotation
    yaw = torch.deg2rad(yaw_deg.float())
    c, s = torch.cos(yaw), torch.sin(yaw)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=-1).view(-1, 3, 3)


def _trace(sdf, origins: Tensor, directions: Tensor, t_near: Tensor,
           t_far: Tensor) -> Tuple[Tensor, Tensor]:
    """Sphere tracing of M rays in object units -> (hit [M] bool, hit points [M, 3])."""
    t = t_near.clone()
    distance = torch.ones_like(t)
    for _ in range(_TRACE_STEPS):
        distance = sdf(origins + t[:, None] * directions)
        t = torch.minimum(t + distance, t_far)
    hit = (distance < _HIT_EPSILON) & (t < t_far)
    return hit, origins + t[:, None] * directions


def _normals(sdf, points: Tensor, eps: float = 1e-3) -> Tensor:
    """Unit SDF gradients [M, 3] by tetrahedral finite differences."""
    offsets = torch.tensor([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]],
                           dtype=points.dtype, device=points.device)  # [4, 3]
    gradient = torch.zeros_like(points)
    for k in range(4):
        gradient = gradient + offsets[k] * sdf(points + eps * offsets[k])[:, None]
    return F.normalize(gradient, dim=-1)


def _lambert(normals_world: Tensor) -> Tensor:  # [M, 3] -> [M] shading factor
    key = torch.tensor(_KEY_LIGHT, device=normals_world.device)
    fill = torch.tensor(_FILL_LIGHT, device=normals_world.device)
    key, fill = F.normalize(key, dim=0), F.normalize(fill, dim=0)
    shade = (AMBIENT + KEY * (normals_world @ key).clamp(min=0)
             + FILL * (normals_world @ fill).clamp(min=0))
    return shade.clamp(max=1.0)


def _trace_supersampled(scenes: Scenes, cameras: Cameras,
                        resolution: int) -> Tuple[Tensor, Tensor]:
    """Shaded object colour [B, R, R, 3] (premultiplied) and coverage [B, R, R] at R pixels."""
    B, device = len(scenes), cameras.device
    origins_w, directions_w = camera_rays(cameras, resolution)  # [B, 3], [B, P, 3]
    P = directions_w.shape[1]
    to_world = _yaw_matrices(scenes.yaw_deg).to(device)  # [B, 3, 3]
    scale = scenes.scale.to(device).float()  # [B]
    # World -> object units: p_obj = R^T p / scale (row form: p @ R / scale).
    origins = (origins_w[:, None, :] @ to_world)[:, 0] / scale[:, None]  # [B, 3]
    directions = directions_w @ to_world  # [B, P, 3], still unit length
    # Bounding sphere |o + t d| = BOUNDING_RADIUS.
    b = (directions * origins[:, None, :]).sum(-1)  # [B, P]
    c = (origins * origins).sum(-1, keepdim=True) - BOUNDING_RADIUS ** 2  # [B, 1]
    disc = b * b - c
    candidate = disc > 0  # [B, P]
    colour = torch.zeros(B, P, 3, device=device)
    alpha = torch.zeros(B, P, device=device)
    albedo = torch.tensor(list(COLOURS.values()), device=device)[scenes.colour.to(device)]  # [B, 3]
    accents = torch.tensor([PALETTE[a] for a in ACCENT_COLOURS], device=device)
    accent_albedo = accents[scenes.accent.to(device).clamp(min=0)]  # [B, 3]
    patterns = torch.where(scenes.accent.to(device) >= 0, scenes.pattern.to(device), -1)  # [B]
    shapes = scenes.shape.to(device)
    for k, sdf in enumerate(SDFS):
        mask = candidate & (shapes == k)[:, None]  # [B, P]
        if not bool(mask.any()):
            continue
        owner = mask.nonzero()[:, 0]  # [M] image of each ray
        root = disc[mask].sqrt()
        t_near = (-b[mask] - root).clamp(min=0)
        t_far = -b[mask] + root
        o, d = origins[owner], directions[mask]  # [M, 3]
        hit, points = _trace(sdf, o, d, t_near, t_far)
        normals_obj = _normals(sdf, points[hit])  # [H, 3]
        normals = (to_world[owner[hit]] @ normals_obj[..., None])[..., 0]  # object -> world
        owners = owner[hit]  # [H]
        painted = accent_mask(SHAPES[k], patterns[owners], points[hit])  # [H] bool
        surface = torch.where(painted[:, None], accent_albedo[owners], albedo[owners])  # [H, 3]
        shaded = surface * _lambert(normals)[:, None]  # [H, 3]
        values = torch.zeros(hit.shape[0], 3, device=device)
        values[hit] = shaded
        colour[mask] = values
        alpha[mask] = hit.float()
    return colour.view(B, resolution, resolution, 3), alpha.view(B, resolution, resolution)


def render_scenes(scenes: Scenes, cameras: Cameras, backgrounds: Tensor, resolution: int = 64,
                  supersample: int = 2) -> Tuple[Tensor, Tensor]:
    """Render B scenes from B cameras over solid backgrounds.

    scenes: B scenes; cameras: B cameras (device of the result); backgrounds [B, 3] in [0, 1].
    Returns rgb [B, R, R, 3] in [0, 1] and alpha [B, R, R] (coverage), R = ``resolution``;
    every pixel is the mean of ``supersample``^2 rays.
    """
    if len(scenes) != len(cameras) or backgrounds.shape != (len(cameras), 3):
        raise ConfigError(f"render_scenes: {len(scenes)} scenes, {len(cameras)} cameras and "
                          f"backgrounds of shape {tuple(backgrounds.shape)} must agree in B")
    if resolution < 1 or supersample < 1:
        raise ConfigError(f"resolution={resolution} and supersample={supersample} must be >= 1")
    colour, alpha = _trace_supersampled(scenes, cameras, resolution * supersample)
    if supersample > 1:
        colour = F.avg_pool2d(colour.permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1)
        alpha = F.avg_pool2d(alpha[:, None], supersample)[:, 0]
    backgrounds = backgrounds.to(colour.device).float()[:, None, None, :]  # [B, 1, 1, 3]
    rgb = colour + (1 - alpha[..., None]) * backgrounds
    return rgb.clamp(0, 1), alpha


def object_scenes(shape: str, colour: str, count: int, scale: float = 1.0,
                  yaw_deg: float = 0.0, accent: Optional[str] = None,
                  pattern: Optional[str] = None) -> Scenes:
    """``count`` copies of one named object (a batch to render from ``count`` cameras).

    ``accent`` and ``pattern`` (both or neither) paint a second colour on a part of it.
    """
    if (accent is None) != (pattern is None):
        raise ConfigError(f"accent={accent!r} and pattern={pattern!r}: give both or neither")
    full = lambda value: torch.full((count,), value)  # noqa: E731
    return Scenes(shape=full(name_index("shape", shape, SHAPES)),
                  colour=full(name_index("colour", colour, COLOUR_NAMES)),
                  scale=full(float(scale)), yaw_deg=full(float(yaw_deg)),
                  accent=full(-1 if accent is None else
                              name_index("accent colour", accent, ACCENT_COLOURS)),
                  pattern=full(-1 if pattern is None else name_index("pattern", pattern, PATTERNS)))


def render_object(shape: str, colour: str, cameras: Cameras,
                  background: Union[Sequence[float], Tensor] = (1.0, 1.0, 1.0),
                  resolution: int = 64, scale: float = 1.0, yaw_deg: float = 0.0,
                  supersample: int = 2) -> Tensor:
    """Ground-truth renders [B, R, R, 3] in [0, 1] of one named object from B cameras.

    ``background`` is one colour [3] or one per camera [B, 3].
    """
    B = len(cameras)
    background = torch.as_tensor(background, dtype=torch.float32)
    backgrounds = background.expand(B, 3).clone() if background.dim() == 1 else background
    scenes = object_scenes(shape, colour, B, scale, yaw_deg)
    rgb, _ = render_scenes(scenes, cameras, backgrounds, resolution, supersample)
    return rgb


def render_spec(spec, cameras: Cameras, backgrounds: Tensor, resolution: int = 64,
                scale: float = 1.0, yaw_deg: float = 0.0,
                supersample: int = 2) -> Tuple[Tensor, Tensor]:
    """Ground truth of one object (an :class:`~nfsd_gs.shapeworld.vocabulary.ObjectSpec`)
    from B cameras over backgrounds [B, 3]: rgb [B, R, R, 3] in [0, 1], alpha [B, R, R]."""
    scenes = object_scenes(spec.shape, spec.colour, len(cameras), scale, yaw_deg, spec.accent,
                           spec.pattern)
    return render_scenes(scenes, cameras, backgrounds, resolution, supersample)

