"""Pure-PyTorch rasterizer of 3D Gaussians: gsplat's classic 3DGS model, on any device.

Same math as gsplat 1.5.3's ``rasterization(..., rasterize_mode="classic",
packed=False)`` (``ProjectionEWA3DGSFused.cu`` and ``RasterizeToPixels3DGSFwd.cu``):

1. world -> camera with the ``viewmats``; Gaussians with z < near or z > far are culled;
2. 3D covariance Sigma = R S S^T R^T from normalized wxyz quaternions and linear scales
   (3DGS, Kerbl et al. 2023, eq. 6);
3. EWA splatting (Zwicker et al. 2001; 3DGS eq. 5): Sigma' = J W Sigma W^T J^T with the
   perspective Jacobian J taken at x/z, y/z clamped to 1.3x the half-FOV tangent,
   then Sigma' + eps2d * I (no opacity compensation: "classic" mode);
4. an opacity-aware bounding box per axis: radius = ceil(min(3.33, sqrt(2 ln(255 o))) *
   sqrt(Sigma'_ii)) (gsplat; arXiv 2402.00525, B.2), zero for culled Gaussians;
5. per pixel centre p = (x + 0.5, y + 0.5): alpha_i = min(0.999, o_i exp(-1/2 d^T Sigma'^-1 d)),
   fragments with alpha < 1/255 skipped, front-to-back compositing by camera z
   C = sum_i c_i alpha_i T_i with T_i = prod_{j<i} (1 - alpha_j) (3DGS eq. 3), stopping
   before the fragment whose T_{i+1} would be <= 1e-4;
6. expected depth sum_i w_i z_i / max(alpha, 1e-10) (gsplat's "ED").

Instead of gsplat's per-thread loops it works on *fragments*: the (camera, Gaussian,
pixel) triples inside each Gaussian's bounding box, clipped to one image tile at a time
(tiles are split further while a tile holds more than ``max_fragments`` candidates),
so memory is O(fragments in a tile) and never [H*W, N].  Within a tile everything is
vectorized: fragments are sorted by (pixel, depth) and the transmittance is a segmented
cumulative sum of log(1 - alpha).  Autograd gives every gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .sh import sh_to_rgb

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD
MAX_FRAGMENT_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4  # compositing stops before T would fall to this
MAX_BBOX_EXTEND = 3.33  # sigmas, gsplat's cap on the bounding box
FOV_CLAMP = 0.3  # J is evaluated at x/z clamped to (1 + 0.3) x the half-FOV tangent


@dataclass
class ProjectedGaussians:
    """Per (camera, Gaussian) screen-space quantities, dense over [C, N]."""

    means2d: Tensor  # [C, N, 2] pixels; zero where culled
    conics: Tensor  # [C, N, 3] upper triangle (a, b, c) of the inverse blurred 2D covariance
    depths: Tensor  # [C, N] camera z
    radii: Tensor  # [C, N, 2] int32 bounding-box half-sizes in pixels; zero where culled


def quats_to_rotmats(quats: Tensor) -> Tensor:  # [N, 4] wxyz -> [N, 3, 3]
    """Rotation matrices of (normalized) wxyz quaternions."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def covariances_3d(quats: Tensor, scales: Tensor) -> Tensor:  # [N, 4], [N, 3] -> [N, 3, 3]
    """Sigma = R S S^T R^T (3DGS, Kerbl et al. 2023, eq. 6); ``scales`` are linear."""
    rs = quats_to_rotmats(quats) * scales[:, None, :]  # [N, 3, 3] = R S
    return rs @ rs.transpose(-1, -2)


def camera_centres(viewmats: Tensor) -> Tensor:  # [C, 4, 4] -> [C, 3]
    """World-space camera positions -R^T t of world-to-camera matrices."""
    rotation, translation = viewmats[:, :3, :3], viewmats[:, :3, 3:]
    return -(rotation.transpose(1, 2) @ translation)[..., 0]


def project_gaussians(means: Tensor, covars: Tensor, opacities: Tensor, viewmats: Tensor,
                      Ks: Tensor, width: int, height: int, near_plane: float,
                      far_plane: float, eps2d: float) -> ProjectedGaussians:
    """EWA projection of N Gaussians into C pinhole cameras (Zwicker et al. 2001; 3DGS eq. 5).

    ``means`` [N, 3] and ``covars`` [N, 3, 3] are world space, ``opacities`` [N] in (0, 1),
    ``viewmats`` [C, 4, 4] world-to-camera (OpenCV), ``Ks`` [C, 3, 3] in pixels.
    """
    rotation, translation = viewmats[:, :3, :3], viewmats[:, :3, 3]  # [C, 3, 3], [C, 3]
    means_cam = torch.einsum("cij,nj->cni", rotation, means) + translation[:, None]  # [C, N, 3]
    covars_cam = torch.einsum("cij,njk,clk->cnil", rotation, covars, rotation)  # [C, N, 3, 3]
    x, y, z = means_cam.unbind(-1)  # [C, N]
    in_depth_range = (z >= near_plane) & (z <= far_plane)  # [C, N]
    z = torch.where(in_depth_range, z, torch.ones_like(z))  # keeps culled entries finite

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]  # [C, 1]
    lim_x_pos = (width - cx) / fx + FOV_CLAMP * (0.5 * width / fx)
    lim_x_neg = cx / fx + FOV_CLAMP * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + FOV_CLAMP * (0.5 * height / fy)
    lim_y_neg = cy / fy + FOV_CLAMP * (0.5 * height / fy)
    tx = z * torch.minimum(torch.maximum(x / z, -lim_x_neg), lim_x_pos)  # [C, N]
    ty = z * torch.minimum(torch.maximum(y / z, -lim_y_neg), lim_y_pos)
    zeros = torch.zeros_like(z)
    jacobian = torch.stack([fx / z, zeros, -fx * tx / (z * z),
                            zeros, fy / z, -fy * ty / (z * z)], dim=-1).reshape(z.shape + (2, 3))
    cov2d = jacobian @ covars_cam @ jacobian.transpose(-1, -2)  # [C, N, 2, 2]
    cov_xx = cov2d[..., 0, 0] + eps2d  # blur: Sigma' + eps2d I
    cov_yy = cov2d[..., 1, 1] + eps2d
    cov_xy = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    det = cov_xx * cov_yy - cov_xy * cov_xy  # [C, N]
    safe_det = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([cov_yy / safe_det, -cov_xy / safe_det, cov_xx / safe_det], dim=-1)

    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)  # [C, N, 2]
    radii = bounding_radii(cov_xx, cov_yy, opacities, means2d, width, height,
                           in_depth_range & (det > 0))
    visible = (radii > 0).all(dim=-1, keepdim=True)  # [C, N, 1]
    means2d = torch.where(visible, means2d, torch.zeros_like(means2d))
    return ProjectedGaussians(means2d=means2d, conics=conics, depths=means_cam[..., 2], radii=radii)


@torch.no_grad()
def bounding_radii(cov_xx: Tensor, cov_yy: Tensor, opacities: Tensor, means2d: Tensor,
                   width: int, height: int, valid: Tensor) -> Tensor:
    """Opacity-aware per-axis bounding-box radii [C, N, 2] int32 (gsplat, arXiv 2402.00525 B.2).

    The box holds every pixel where alpha >= 1/255; zero for Gaussians that are culled,
    too transparent, or whose box misses the image.
    """
    opacity = opacities.expand_as(cov_xx)  # [C, N]
    bright_enough = opacity >= ALPHA_THRESHOLD
    extend = torch.sqrt(2.0 * torch.log(opacity.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
    extend = extend.clamp(max=MAX_BBOX_EXTEND)
    radius = torch.stack([torch.ceil(extend * cov_xx.clamp_min(0).sqrt()),
                          torch.ceil(extend * cov_yy.clamp_min(0).sqrt())], dim=-1)  # [C, N, 2]
    mx, my = means2d.detach().unbind(-1)
    rx, ry = radius.unbind(-1)
    on_image = (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
    keep = valid & bright_enough & on_image & ((rx > 0) | (ry > 0))
    return torch.where(keep[..., None], radius, torch.zeros_like(radius)).to(torch.int32)


# columns of VisiblePairs.features
MEAN_X, MEAN_Y, CONIC_A, CONIC_B, CONIC_C, OPACITY, RED, GREEN, BLUE, DEPTH = range(10)
SHAPE_COLUMNS = slice(MEAN_X, OPACITY + 1)  # what alpha needs


@dataclass
class VisiblePairs:
    """The (camera, Gaussian) pairs with a non-zero box, in (camera, depth) order.

    Per-pair values are packed in one [P, 10] tensor so that each fragment needs a single
    differentiable gather (``index_select``, whose backward is a fast ``index_add``).
    """

    camera: Tensor  # [P] long
    gaussian: Tensor  # [P] long
    camera_row: Tensor  # [P] int32 or int64: camera * height, the first row of its image
    pixel_box: Tensor  # [P, 4] int32: first x, last x, first y, last y pixel (inclusive)
    features: Tensor  # [P, 10] means2d (from info["means2d"]), conic, opacity, rgb, depth


def gather_visible_pairs(projected: ProjectedGaussians, means: Tensor, opacities: Tensor,
                         sh_coeffs: Tensor, sh_degree: int, viewmats: Tensor, height: int,
                         width: int) -> VisiblePairs:
    """Visible pairs sorted by camera, then depth (stable: ties keep Gaussian order, as gsplat).

    Colours are SH evaluated along normalize(mean - camera centre) (gsplat's ``dirs``).
    """
    num_cameras, num_gaussians = projected.depths.shape
    camera, gaussian = torch.nonzero((projected.radii > 0).all(dim=-1), as_tuple=True)  # [P]
    depths = projected.depths.detach()[camera, gaussian]  # [P]
    order = torch.sort(depths, stable=True).indices
    order = order[torch.sort(camera[order], stable=True).indices]
    camera, gaussian = camera[order], gaussian[order]
    flat = camera * num_gaussians + gaussian  # [P] index into [C * N]

    def per_pair(dense: Tensor) -> Tensor:  # [C, N, D] -> [P, D]
        return dense.reshape(num_cameras * num_gaussians, -1).index_select(0, flat)

    means2d = per_pair(projected.means2d)  # [P, 2]
    directions = means.index_select(0, gaussian) - camera_centres(viewmats).index_select(0, camera)
    colors = sh_to_rgb(sh_degree, directions, sh_coeffs.index_select(0, gaussian))  # [P, 3]
    features = torch.cat([means2d, per_pair(projected.conics),
                          opacities.index_select(0, gaussian)[:, None], colors,
                          per_pair(projected.depths)], dim=-1)  # [P, 10]
    # pixel centres j + 0.5 inside [mean - r, mean + r]
    radii = per_pair(projected.radii).to(means2d.dtype)  # [P, 2]
    first = torch.ceil(means2d.detach() - radii - 0.5).int()  # [P, 2]
    last = torch.floor(means2d.detach() + radii - 0.5).int()
    pixel_box = torch.stack([first[:, 0], last[:, 0], first[:, 1], last[:, 1]], dim=-1)
    pixel_dtype = torch.int32 if num_cameras * height * width < 2**31 else torch.int64
    return VisiblePairs(camera=camera, gaussian=gaussian, pixel_box=pixel_box, features=features,
                        camera_row=(camera * height).to(pixel_dtype))


@torch.no_grad()
def enumerate_fragments(pixel_box: Tensor, x0: int, x1: int, y0: int, y1: int
                        ) -> Tuple[Tensor, Tensor, Tensor]:
    """All (pair, x, y) with pixel (x, y) in a pair's box and in the region [x0, x1) x [y0, y1).

    Returns pair index, x, y, each [F] int32 (integer division is much faster than int64),
    grouped by pair.
    """
    first_x = pixel_box[:, 0].clamp(min=x0)
    last_x = pixel_box[:, 1].clamp(max=x1 - 1)
    first_y = pixel_box[:, 2].clamp(min=y0)
    last_y = pixel_box[:, 3].clamp(max=y1 - 1)
    box_width = (last_x - first_x + 1).clamp(min=0)  # [P]
    counts = box_width * (last_y - first_y + 1).clamp(min=0)  # [P]
    pair = torch.repeat_interleave(
        torch.arange(len(counts), dtype=torch.int32, device=counts.device), counts)  # [F]
    starts = torch.cumsum(counts, 0, dtype=torch.int32) - counts  # [P]; F < max_fragments
    per_pair = torch.stack([starts, box_width.clamp(min=1), first_x, first_y], dim=-1)  # [P, 4]
    start, width, left, top = per_pair.index_select(0, pair).unbind(-1)  # [F] each
    offset = torch.arange(len(pair), dtype=torch.int32, device=counts.device) - start  # [F]
    row = offset // width
    return pair, left + offset - row * width, top + row


def fragment_alphas(columns: Sequence[Tensor], x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
    """alpha = min(0.999, o exp(-sigma)), sigma = 1/2 d^T Sigma'^-1 d (3DGS eq. 2-3).

    ``columns`` are [F] tensors (mean x, mean y, conic a, b, c, opacity, ...) per fragment;
    pixel centres are (x + 0.5, y + 0.5).  Returns alpha and sigma, each [F].
    """
    mean_x, mean_y, conic_a, conic_b, conic_c, opacity = columns[:OPACITY + 1]
    dx = mean_x - (x.to(mean_x.dtype) + 0.5)
    dy = mean_y - (y.to(mean_y.dtype) + 0.5)
    sigma = 0.5 * (conic_a * dx * dx + conic_c * dy * dy) + conic_b * dx * dy
    alpha = torch.clamp_max(opacity * torch.exp(-sigma), MAX_FRAGMENT_ALPHA)
    return alpha, sigma


def count_candidates(pixel_box: Tensor, x0: int, x1: int, y0: int, y1: int) -> int:
    """Number of fragments :func:`enumerate_fragments` would produce for a region."""
    w = (pixel_box[:, 1].clamp(max=x1 - 1) - pixel_box[:, 0].clamp(min=x0) + 1).clamp(min=0)
    h = (pixel_box[:, 3].clamp(max=y1 - 1) - pixel_box[:, 2].clamp(min=y0) + 1).clamp(min=0)
    return int((w * h).sum())


def segment_exclusive_cumsum(values: Tensor, new_segment: Tensor) -> Tensor:
    """Per-segment exclusive prefix sums of ``values`` [F]; segments start where ``new_segment``."""
    inclusive = torch.cumsum(values, 0)  # [F]
    exclusive = inclusive - values
    segment = torch.cumsum(new_segment.long(), 0) - 1  # [F]
    base = exclusive[new_segment].index_select(0, segment)  # [F]
    return exclusive - base


def composite_region(pairs: VisiblePairs, x0: int, x1: int, y0: int, y1: int,
                     width: int, height: int) -> Tuple[Tensor, Tensor]:
    """Front-to-back alpha compositing (3DGS eq. 3) of the fragments in one image region.

    Returns flat pixel ids [F] (camera * H * W + y * W + x) and w * (r, g, b, z, 1) [F, 5]
    with w_i = alpha_i T_i, ready to be summed per pixel.
    """
    pair, x, y = enumerate_fragments(pairs.pixel_box, x0, x1, y0, y1)
    with torch.no_grad():  # cheap first pass: which fragments count at all
        shape = pairs.features[:, SHAPE_COLUMNS].index_select(0, pair)
        alpha, sigma = fragment_alphas(shape.unbind(-1), x, y)
        keep = torch.nonzero((sigma >= 0) & (alpha >= ALPHA_THRESHOLD))[:, 0]
        pair = pair.index_select(0, keep)  # [F]
        row = pairs.camera_row.index_select(0, pair) + y.index_select(0, keep)  # camera * H + y
        pixel = row * width + x.index_select(0, keep)  # [F] camera * H * W + y * W + x
        # fragments are grouped by pair, pairs are in (camera, depth) order: a stable sort
        # by pixel leaves each pixel's fragments front to back
        pixel, order = torch.sort(pixel, stable=True)
        pair = pair.index_select(0, order)
        row = pixel // width
        x, y = pixel - row * width, row - pairs.camera_row.index_select(0, pair)
    # one differentiable gather; unbind (not column slices) keeps the backward cheap
    fragment = pairs.features.index_select(0, pair).unbind(-1)  # 10 x [F]
    alpha, _ = fragment_alphas(fragment, x, y)  # [F]

    new_pixel = torch.ones_like(pixel, dtype=torch.bool)
    new_pixel[1:] = pixel[1:] != pixel[:-1]
    log_transmit = torch.log1p(-alpha).double()  # [F]; float64 for the long running sums
    log_t_before = segment_exclusive_cumsum(log_transmit, new_pixel)  # log T_i
    alive = (log_t_before + log_transmit > math.log(MIN_TRANSMITTANCE))  # a prefix per pixel
    weight = alpha * torch.exp(log_t_before).to(alpha.dtype) * alive  # [F] w_i = alpha_i T_i
    weighted = [fragment[column] * weight for column in (RED, GREEN, BLUE, DEPTH)] + [weight]
    return pixel, torch.stack(weighted, dim=-1)  # [F, 5]


def split_regions(pixel_box: Tensor, x0: int, x1: int, y0: int, y1: int,
                  max_fragments: int) -> list:
    """Regions covering [x0, x1) x [y0, y1), quartered while they hold > ``max_fragments``."""
    if x1 - x0 <= 8 and y1 - y0 <= 8 or count_candidates(pixel_box, x0, x1, y0, y1) <= max_fragments:
        return [(x0, x1, y0, y1)]
    xm, ym = (x0 + x1) // 2, (y0 + y1) // 2
    quarters = [(x0, xm, y0, ym), (xm, x1, y0, ym), (x0, xm, ym, y1), (xm, x1, ym, y1)]
    return [region for (a, b, c, d) in quarters if a < b and c < d
            for region in split_regions(pixel_box, a, b, c, d, max_fragments)]


def rasterize_reference(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz
    scales: Tensor,  # [N, 3] linear
    opacities: Tensor,  # [N]
    sh_coeffs: Tensor,  # [N, K, 3]
    sh_degree: int,
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    backgrounds: Tensor,  # [C, 3]
    near_plane: float = 0.01,
    far_plane: float = 100.0,
    eps2d: float = 0.3,
    tile_size: int = 64,
    max_fragments: int = 4_000_000,
) -> Tuple[Tensor, Tensor, Tensor, Dict[str, Any]]:
    """Render C views of N Gaussians; same outputs as :func:`nfsd_gs.render.rasterize_gaussians`.

    ``tile_size`` (pixels) and ``max_fragments`` only bound memory; the image does not
    depend on them.  Returns rgb [C,H,W,3] (background composited as rgb + (1 - alpha) bg),
    alpha [C,H,W,1], expected depth [C,H,W,1] (camera z; 0 where alpha = 0) and an info
    dict with gsplat's keys (``means2d`` [C,N,2] with a gradient, ``radii`` [C,N,2] int32,
    ``depths`` [C,N], ``width``, ``height``, ``n_cameras``, ...).
    """
    num_cameras = viewmats.shape[0]
    projected = project_gaussians(means, covariances_3d(quats, scales), opacities, viewmats,
                                  Ks, width, height, near_plane, far_plane, eps2d)
    pairs = gather_visible_pairs(projected, means, opacities, sh_coeffs, sh_degree, viewmats,
                                 height, width)

    accumulated = torch.zeros(num_cameras * height * width, 5, dtype=means.dtype,
                              device=means.device)  # w * (r, g, b, z, 1)
    touched = False
    for ty in range(0, height, tile_size):
        for tx in range(0, width, tile_size):
            tile = (tx, min(tx + tile_size, width), ty, min(ty + tile_size, height))
            for region in split_regions(pairs.pixel_box, *tile, max_fragments):
                pixels, weighted = composite_region(pairs, *region, width, height)
                if len(pixels):
                    accumulated = accumulated.index_add(0, pixels, weighted)
                    touched = True
    if not touched:  # nothing drawn: keep means2d in the graph so its .grad is zeros, not None
        accumulated = accumulated + 0.0 * projected.means2d.sum()

    accumulated = accumulated.reshape(num_cameras, height, width, 5)
    alpha = accumulated[..., 4:5]  # [C, H, W, 1]
    rgb = accumulated[..., :3] + (1.0 - alpha) * backgrounds[:, None, None, :]
    depth = accumulated[..., 3:4] / alpha.clamp(min=1e-10)
    info = {
        "means2d": projected.means2d,  # [C, N, 2]
        "radii": projected.radii,  # [C, N, 2] int32
        "depths": projected.depths,  # [C, N]
        "conics": projected.conics,  # [C, N, 3]
        "opacities": opacities[None].expand(num_cameras, -1),  # [C, N]
        "width": width,
        "height": height,
        "n_cameras": num_cameras,
        "n_batches": 1,
        "tile_size": tile_size,
        "batch_ids": None,
        "camera_ids": None,
        "gaussian_ids": None,
    }
    return rgb, alpha, depth, info
