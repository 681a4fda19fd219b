"""UV-textured meshes: an xatlas atlas and a base-colour texture baked from the Gaussians' renders.

The path (``MeshSettings.texture`` > 0; export/mesh.py makes the surface first)::

    mesh (vertex colours) -> xatlas unwrap: charts packed in one square atlas, ``padding``
      texels apart -> every texel's face and barycentrics (the UV triangles rasterized by
      :func:`rasterize_uv`) -> its 3D point and normal
      -> render the Gaussians from ``views`` cameras on a Fibonacci sphere around the object
         (gsplat on CUDA, the reference rasterizer on the CPU): colour, alpha, depth
      -> each texel gathers from every view that sees it: projected into the view, kept where
         the Gaussians cover the pixel (alpha > 1/2) and their depth there is not in front of
         the texel's by more than ``depth_tolerance`` (no other part hides it; a depth behind
         it is translucent Gaussians seen through the surface), weighted by cos^2 of
         the angle between its normal and the ray to the camera (cos > ``MIN_VIEW_COS``)
      -> texels no view saw keep the mesh's vertex colours, interpolated
      -> seams padded: the charts grow by ``padding`` texels (bilinear filtering and mip-maps
         read across a chart's border), then a pull-push fill gives the rest of the atlas the
         colours of the nearest charts
      -> trimesh ``TextureVisuals`` with a PBR material whose ``baseColorTexture`` is the bake

DreamGaussian's stage 2 (Tang et al., ICLR 2024, Sec. 3.3 "UV-Space Texture Refinement", its
first, coarse texture) bakes the other way round: it rasterizes the mesh into each of its 26
views (nvdiffrast, CUDA) and scatters the pixels into the texels their UV points to, the first
view that reaches a texel keeping it, then inpaints the holes.  Gathering per texel needs no
mesh rasterizer (so it runs on the CPU), samples every texel instead of leaving the ones
between scattered pixels empty, and blends views by angle instead of by order; the Gaussians'
own depth is the visibility test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import Cameras, look_at_origin
from ..errors import ConfigError, NfsdError
from ..render.rasterize import rasterize_gaussians
from ..utils.timing import NO_TIMER

#: Texture sizes (texels per side) a bake may ask for: powers of two.
MIN_TEXTURE, MAX_TEXTURE = 64, 4096
#: Faces per piece the mesh is unwrapped in (:func:`unwrap`).
PIECE_FACES = 256
#: Views the texture is baked from (DreamGaussian uses 26).
BAKE_VIEWS = 24
#: Their vertical field of view in degrees; the object's bounding sphere just fits it.
BAKE_FOVY = 40.0
#: Bake renders are the texture's size, up to this on CUDA (a view then shows the charts it
#: faces at about one pixel per texel) ...
MAX_BAKE_RESOLUTION = 1024
#: ... and up to this on the CPU, where the reference rasterizer takes about a second a view
#: at 256^2 for a few thousand Gaussians (a 1024 texture then gets a quarter of its detail).
CPU_BAKE_RESOLUTION = 256
#: A view counts for a texel only when the texel's normal faces it this much (cos of the angle;
#: 0.2: up to 78 degrees), where the pixel's footprint on the surface is at most 5x its size.
MIN_VIEW_COS = 0.2
#: Weight of the vertex colour in a texel's blend: far below any view's (>= MIN_VIEW_COS^2),
#: so it only shows where no view saw the texel.
FALLBACK_WEIGHT = 1e-4


def check_texture_size(size: int, where: str = "config key 'output.mesh_texture'") -> None:
    """0 (vertex colours) or a power of two in [MIN_TEXTURE, MAX_TEXTURE]; else ConfigError."""
    if size != 0 and not (MIN_TEXTURE <= size <= MAX_TEXTURE and size & (size - 1) == 0):
        raise ConfigError(f"{where}: {size!r} must be 0 (vertex colours) or a power of two "
                          f"from {MIN_TEXTURE} to {MAX_TEXTURE}")


def chart_padding(size: int) -> int:
    """Texels between xatlas' charts and grown around each: 4 at 1024, at least 2."""
    return max(2, size // 256)


# --------------------------------------------------------------------------- the atlas


@dataclass
class Atlas:
    """The unwrapped mesh: xatlas splits vertices along chart seams."""

    vertex_of: np.ndarray  # [V'] index of the source vertex each atlas vertex copies
    faces: np.ndarray  # [F, 3] into the atlas vertices
    uv: np.ndarray  # [V', 2] in [0, 1], v up (trimesh's convention; glTF's flips on export)


def unwrap(vertices: np.ndarray, faces: np.ndarray, size: int) -> Atlas:
    """xatlas (Jonathan Young's port of thekla_atlas) charts and packs ``vertices [V, 3]``,
    ``faces [F, 3]`` into one atlas of about ``size``^2 texels, charts ``chart_padding`` apart.

    The mesh goes to xatlas in pieces of about PIECE_FACES faces (:func:`mesh_pieces`):
    xatlas' chart growing costs about the square of a connected piece's face count (a 65k-face
    surface: 34 s whole, 1.9 s in pieces of 256 faces, on one CPU core), and a piece border is
    just one more chart border.  Faces come back grouped by piece.
    """
    try:
        import xatlas
    except ImportError:
        raise NfsdError("a textured mesh needs xatlas (pip install xatlas), or use vertex "
                        "colours (texture size 0)") from None
    pieces = mesh_pieces(vertices[faces].mean(1), PIECE_FACES)
    atlas = xatlas.Atlas()
    used = []  # per piece: the source vertices it uses
    for piece in pieces:
        corners, local = np.unique(faces[piece], return_inverse=True)
        used.append(corners)
        atlas.add_mesh(np.ascontiguousarray(vertices[corners], np.float32),
                       local.reshape(-1, 3).astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = size
    pack.padding = chart_padding(size)
    pack.bilinear = True  # a texel of margin for bilinear filtering
    atlas.generate(xatlas.ChartOptions(), pack)
    if atlas.atlas_count != 1:  # charts on several pages would share UVs
        raise NfsdError(f"xatlas packed the charts on {atlas.atlas_count} atlases, not one; "
                        "try another texture size")
    vertex_of, atlas_faces, uvs, count = [], [], [], 0
    for index, corners in enumerate(used):
        mapping, piece_faces, uv = atlas[index]
        vertex_of.append(corners[mapping])
        atlas_faces.append(piece_faces.astype(np.int64) + count)
        uvs.append(uv)
        count += len(mapping)
    return Atlas(np.concatenate(vertex_of).astype(np.int64), np.concatenate(atlas_faces),
                 np.concatenate(uvs).astype(np.float32))


def mesh_pieces(centres: np.ndarray, size: int) -> list:  # [F, 3] -> [faces of each piece]
    """Split faces (by their ``centres``) into spatially compact pieces of at most ``size``:
    halve at the median along the longest side of each piece's box, until small enough."""
    todo, pieces = [np.arange(len(centres))], []
    while todo:
        piece = todo.pop()
        if len(piece) <= size:
            pieces.append(piece)
            continue
        points = centres[piece]
        order = np.argsort(points[:, np.ptp(points, 0).argmax()], kind="stable")
        todo += [piece[order[len(piece) // 2:]], piece[order[:len(piece) // 2]]]
    return pieces


def rasterize_uv(uv: Tensor, faces: Tensor, size: int) -> Tuple[Tensor, Tensor]:
    """The face under each texel centre of a ``size``^2 atlas and the centre's barycentrics.

    ``uv [V, 2]`` (v up), ``faces [F, 3]``.  Returns ``face [S, S]`` long (-1: no face) and
    ``bary [S, S, 3]``; row 0 is the top of the image (v = 1).  Every face enumerates the
    texels of its bounding box (vectorised: one row per candidate texel); a texel centre on an
    edge shared by two faces goes to the higher face index (deterministic on every device).
    """
    device = uv.device
    corners = uv[faces].double()  # [F, 3, 2]
    x = corners[..., 0] * size - 0.5  # texel-centre units: texel column j sits at x = j
    y = (1.0 - corners[..., 1]) * size - 0.5
    x0 = x.amin(1).ceil().clamp(min=0).long()  # [F]
    x1 = x.amax(1).floor().clamp(max=size - 1).long()
    y0 = y.amin(1).ceil().clamp(min=0).long()
    y1 = y.amax(1).floor().clamp(max=size - 1).long()
    width, height = (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)
    counts = width * height  # [F] candidate texels per face
    face_of = torch.repeat_interleave(torch.arange(len(faces), device=device), counts)  # [C]
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(len(face_of), device=device) - first[face_of]
    px = x0[face_of] + local % width[face_of]  # [C]
    py = y0[face_of] + local // width[face_of]
    bary = barycentric_2d(torch.stack([px, py], -1).double(), x[face_of], y[face_of])  # [C, 3]
    inside = (bary >= -1e-9).all(-1)
    face_of, texel, bary = face_of[inside], (py * size + px)[inside], bary[inside]
    face = torch.full((size * size,), -1, dtype=torch.long, device=device)
    face.scatter_reduce_(0, texel, face_of, "amax")
    keep = face[texel] == face_of
    barys = torch.zeros(size * size, 3, dtype=torch.float32, device=device)
    barys[texel[keep]] = bary[keep].float()
    return face.view(size, size), barys.view(size, size, 3)


def barycentric_2d(points: Tensor, x: Tensor, y: Tensor) -> Tensor:  # [C, 2], [C, 3] x2 -> [C, 3]
    """Barycentric coordinates of ``points`` in triangles with corners (x[:, k], y[:, k]);
    NaN (never inside) for degenerate triangles."""
    ax, ay = x[:, 0], y[:, 0]
    e1x, e1y, e2x, e2y = x[:, 1] - ax, y[:, 1] - ay, x[:, 2] - ax, y[:, 2] - ay
    px, py = points[:, 0] - ax, points[:, 1] - ay
    area = e1x * e2y - e2x * e1y  # twice the signed area
    area = torch.where(area.abs() > 1e-12, area, torch.full_like(area, float("nan")))
    b1 = (px * e2y - e2x * py) / area
    b2 = (e1x * py - px * e1y) / area
    return torch.stack([1.0 - b1 - b2, b1, b2], -1)


# --------------------------------------------------------------------------- the views


def bake_cameras(centre: Tensor, radius: float, count: int = BAKE_VIEWS,
                 fovy_deg: float = BAKE_FOVY) -> Cameras:
    """``count`` cameras on a Fibonacci sphere (near-uniform directions, poles included) around
    ``centre [3]``, each facing it from where a sphere of ``radius`` just fills its view."""
    k = torch.arange(count, dtype=torch.float32) + 0.5
    z = 1.0 - 2.0 * k / count
    ring = (1.0 - z * z).clamp(min=0).sqrt()
    phi = k * math.pi * (3.0 - math.sqrt(5.0))  # the golden angle
    directions = torch.stack([ring * torch.cos(phi), ring * torch.sin(phi), z], -1)  # [V, 3]
    distance = radius / math.sin(math.radians(fovy_deg) / 2)
    world_to_camera = look_at_origin(directions * distance)  # [V, 4, 4] cameras facing 0
    centre = centre.detach().float().cpu()
    world_to_camera[:, :3, 3] -= world_to_camera[:, :3, :3] @ centre  # ... now facing centre
    return Cameras(world_to_camera, torch.full((count,), fovy_deg),
                   torch.rad2deg(torch.atan2(directions[:, 1], directions[:, 0])),
                   torch.rad2deg(torch.asin(z)), torch.full((count,), distance))


def render_views(splats, cameras: Cameras, resolution: int) -> Tensor:  # -> [V, 5, H, W]
    """The Gaussians (gsplat's layout) from ``cameras``: premultiplied colour (black
    background), alpha and alpha x depth, channels first for ``grid_sample``."""
    device = splats["means"].device
    sh = torch.cat([splats["sh0"], splats["shN"]], 1) if "shN" in splats else splats["sh0"]
    degree = int(round(math.sqrt(sh.shape[1]))) - 1
    cameras = cameras.to(device)
    images = []
    with torch.no_grad():
        for view in range(len(cameras)):  # one view at a time bounds the reference's memory
            rgb, alpha, depth, _ = rasterize_gaussians(
                splats["means"].float(), splats["quats"].float(), torch.exp(splats["scales"].float()),
                torch.sigmoid(splats["opacities"].float()), sh.float(), degree,
                cameras.world_to_camera[view:view + 1],
                cameras.intrinsics(resolution, resolution)[view:view + 1],
                resolution, resolution, torch.zeros(1, 3, device=device))
            images.append(torch.cat([rgb, alpha, alpha * depth], -1)[0].permute(2, 0, 1))
    return torch.stack(images)


# --------------------------------------------------------------------------- the bake


def gather_views(points: Tensor, normals: Tensor, images: Tensor, cameras: Cameras,
                 depth_tolerance: float) -> Tuple[Tensor, Tensor]:
    """Sum over views of weight x colour at each texel, and the weights: ``points``, ``normals``
    ``[T, 3]``, ``images [V, 5, H, W]`` from :func:`render_views` -> ``[T, 3]``, ``[T]``.

    A view's weight is cos^2 of the angle between the normal and the ray to the camera where
    that cos exceeds MIN_VIEW_COS, the Gaussians cover the pixel (alpha > 1/2) and their
    alpha-weighted depth there is at most ``depth_tolerance`` in front of the texel's
    camera depth (the expected depth of partly transparent Gaussians lies behind the
    surface: measured on a cone trained 100 steps, 0.03 behind at the median, 0.08 at the
    95th percentile, for Gaussians 0.02 across);
    0 elsewhere.  Colours and depths are sampled bilinearly (pixel centres at +0.5).
    """
    height, width = images.shape[-2:]
    cameras = cameras.to(points.device)
    intrinsics = cameras.intrinsics(width, height)  # [V, 3, 3]
    scale = torch.tensor([2.0 / width, 2.0 / height], device=points.device)
    colour = torch.zeros(len(points), 3, device=points.device)
    total = torch.zeros(len(points), device=points.device)
    for view in range(len(cameras)):
        rotation, translation = cameras.world_to_camera[view, :3, :3], cameras.world_to_camera[view, :3, 3]
        camera = points @ rotation.T + translation  # [T, 3]
        depth = camera[:, 2].clamp(min=1e-6)
        pixel = (camera @ intrinsics[view].T)[:, :2] / depth[:, None]  # [T, 2]
        grid = (pixel * scale - 1.0).view(1, 1, -1, 2)
        sample = F.grid_sample(images[view:view + 1], grid, mode="bilinear",
                               padding_mode="zeros", align_corners=False)[0, :, 0]  # [5, T]
        alpha = sample[3]
        seen_depth = sample[4] / alpha.clamp(min=1e-6)
        towards = F.normalize(cameras.positions[view] - points, dim=-1)
        cos = (normals * towards).sum(-1)
        visible = ((camera[:, 2] > 0) & (alpha > 0.5) & (cos > MIN_VIEW_COS)
                   & (seen_depth > camera[:, 2] - depth_tolerance))
        weight = torch.where(visible, cos.square(), torch.zeros_like(cos))
        colour += weight[:, None] * sample[:3].T / alpha.clamp(min=1e-6)[:, None]
        total += weight
    return colour, total


def pad_charts(texture: Tensor, filled: Tensor, texels: int) -> Tensor:  # [S, S, 3], [S, S] -> [S, S, 3]
    """Grow the filled texels ``texels`` steps (each empty texel next to filled ones takes their
    mean), then fill what is left by pull-push (Gortler et al. 1996, "The Lumigraph", Sec. 3.3):
    masked means down a pyramid, empty texels taking the coarser level's colour on the way up."""
    colour = texture.permute(2, 0, 1)[None] * filled  # [1, 3, S, S]
    weight = filled[None, None].float()  # [1, 1, S, S]
    ones = torch.ones(1, 1, 3, 3, device=texture.device)
    for _ in range(texels):
        near_colour = F.conv2d(colour, ones.expand(3, 1, 3, 3), padding=1, groups=3)
        near_weight = F.conv2d(weight, ones, padding=1)
        grow = (weight == 0) & (near_weight > 0)
        colour = torch.where(grow, near_colour / near_weight.clamp(min=1), colour)
        weight = torch.where(grow, torch.ones_like(weight), weight)
    return pull_push(colour, weight)[0].permute(1, 2, 0)


def pull_push(colour: Tensor, weight: Tensor) -> Tensor:  # [1, 3, S, S] (premultiplied), [1, 1, S, S]
    """Empty texels (weight 0) take the weighted mean of the nearest filled ones, level by level."""
    if colour.shape[-1] == 1 or bool((weight > 0).all()):
        return colour / weight.clamp(min=1e-12)
    coarse = pull_push(F.avg_pool2d(colour, 2, ceil_mode=True), F.avg_pool2d(weight, 2, ceil_mode=True))
    up = F.interpolate(coarse, size=colour.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(weight > 0, colour / weight.clamp(min=1e-12), up)


def bake_texture(mesh, splats, size: int, depth_tolerance: float, views: int = BAKE_VIEWS,
                 resolution: int | None = None, timer=NO_TIMER):
    """``mesh`` (a vertex-coloured ``trimesh.Trimesh``) with an xatlas atlas and a ``size``^2
    base-colour texture baked from ``views`` renders of ``splats`` (gsplat's layout, on the
    device the bake runs on) at ``resolution`` (default: ``size``, at most MAX_BAKE_RESOLUTION
    on CUDA and CPU_BAKE_RESOLUTION on the CPU);
    returns a new ``trimesh.Trimesh`` whose visual is a PBR-textured ``TextureVisuals``."""
    import trimesh
    from PIL import Image

    device = splats["means"].device
    resolution = resolution or min(size, MAX_BAKE_RESOLUTION if device.type == "cuda"
                                   else CPU_BAKE_RESOLUTION)
    with timer.phase("unwrap"):
        atlas = unwrap(np.asarray(mesh.vertices), np.asarray(mesh.faces), size)
    with timer.phase("bake"):
        vertices = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32, device=device)
        normals = torch.as_tensor(np.array(mesh.vertex_normals), dtype=torch.float32, device=device)
        colours = torch.as_tensor(np.asarray(mesh.visual.vertex_colors)[:, :3], device=device) / 255.0
        vertex_of = torch.as_tensor(atlas.vertex_of, device=device)
        corners = vertex_of[torch.as_tensor(atlas.faces, device=device)]  # [F, 3] source vertices
        face, bary = rasterize_uv(torch.as_tensor(atlas.uv, device=device),
                                  torch.as_tensor(atlas.faces, device=device), size)
        filled = face >= 0  # [S, S]
        ids, weights = corners[face[filled]], bary[filled][..., None]  # [T, 3], [T, 3, 1]
        points = (weights * vertices[ids]).sum(1)  # [T, 3]
        texel_normals = F.normalize((weights * normals[ids]).sum(1), dim=-1)
        fallback = (weights * colours[ids].float()).sum(1)
        lo, hi = vertices.amin(0), vertices.amax(0)
        cameras = bake_cameras((lo + hi) / 2, float((hi - lo).norm()) / 2, views)
        images = render_views(splats, cameras, resolution)
        colour, total = gather_views(points, texel_normals, images, cameras, depth_tolerance)
        texture = torch.zeros(size, size, 3, device=device)
        texture[filled] = (colour + FALLBACK_WEIGHT * fallback) / (total + FALLBACK_WEIGHT)[:, None]
        texture = pad_charts(texture, filled, chart_padding(size))
        pixels = (texture.clamp(0, 1) * 255).round().byte().cpu().numpy()
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(pixels, "RGB"), metallicFactor=0.0, roughnessFactor=1.0)
    visual = trimesh.visual.TextureVisuals(uv=atlas.uv, material=material)
    textured = trimesh.Trimesh(np.asarray(mesh.vertices)[atlas.vertex_of], atlas.faces,
                               vertex_normals=np.asarray(mesh.vertex_normals)[atlas.vertex_of],
                               visual=visual, process=False)  # the seams' copies keep one normal
    textured.metadata.update(bake_views=views,  # and the share of texels any view saw:
                             texture_coverage=float((total > 0).float().mean()))
    return textured
