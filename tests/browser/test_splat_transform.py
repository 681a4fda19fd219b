"""An independent reader: PlayCanvas splat-transform (npm, ``viewer/web``) reads every format we
write and finds the same splats; and its ``.ply`` (opacity 1 stored as +inf) opens here (issue 15.4).

Skipped, saying why, where ``npm ci --prefix viewer/web`` has not run; a failure where
``NFSD_REQUIRE_BROWSER`` or ``CI`` is set (.ci/run installs it), like the browser tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from nfsd_gs.formats import FORMATS, format_suffix, load_splats, save_splats
from nfsd_gs.formats.ply import load_ply
from test_formats import N, POSITION_TOLERANCE, object_splats

from .conftest import require

WEB_DIR = Path(__file__).resolve().parents[2] / "viewer" / "web"
SPLAT_TRANSFORM = WEB_DIR / "node_modules" / ".bin" / "splat-transform"


def splat_transform(*args: str) -> str:
    require(SPLAT_TRANSFORM.exists() and shutil.which("node") is not None,
            f"splat-transform is not installed (npm ci --prefix {WEB_DIR}; .ci/run does)")
    done = subprocess.run([str(SPLAT_TRANSFORM), "--quiet", *args], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"splat-transform {' '.join(args)} failed: {done.stderr[-2000:]}"
    return done.stdout


def summary(stdout: str) -> tuple:
    """(row count, {column: (min, max)}) from splat-transform's ``--summary`` table."""
    count = int(re.search(r"Row Count:\*\*\s*(\d+)", stdout).group(1))
    ranges = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and re.fullmatch(r"-?[\d.]+(e-?\d+)?", cells[1] or "x"):
            ranges[cells[0]] = (float(cells[1]), float(cells[2]))
    return count, ranges


@pytest.mark.parametrize("name", FORMATS)
def test_splat_transform_reads_each_format(tmp_path, name):
    splats = object_splats()
    path = save_splats(tmp_path / f"model{format_suffix(name)}", splats, name)
    count, ranges = summary(splat_transform(str(path), "--summary", "null"))
    assert count == N
    tolerance = POSITION_TOLERANCE[name] + 1e-5  # its table prints 6 decimals
    for axis, column in zip("xyz", splats["means"].T):
        low, high = ranges[axis]
        assert abs(low - column.min().item()) <= tolerance, (axis, low)
        assert abs(high - column.max().item()) <= tolerance, (axis, high)


def test_splat_transform_reads_our_spz_as_the_same_scene(tmp_path):
    """Axes, rotations and SH signs: its .ply from our .spz matches our own .ply (SPZ is RUB)."""
    splats = object_splats(n=300)
    spz = save_splats(tmp_path / "model.spz", splats, "spz")
    splat_transform(str(spz), str(tmp_path / "back.ply"))
    back = load_ply(tmp_path / "back.ply")
    torch.testing.assert_close(back["means"], splats["means"], atol=2.0 ** -13 + 1e-6, rtol=0)
    unit = splats["quats"] / splats["quats"].norm(dim=1, keepdim=True)
    alignment = (back["quats"] / back["quats"].norm(dim=1, keepdim=True) * unit).sum(dim=1).abs()
    assert alignment.min().item() > 0.999  # the same rotation (q and -q are one)
    torch.testing.assert_close(back["shN"], splats["shN"], atol=0.07, rtol=0)  # 4-5 bit SH


def test_splat_transform_ply_from_spz_opens_here(tmp_path):
    """Its .ply from an .spz stores an opacity of exactly 1 as a +inf logit: read, clamped, said."""
    splats = object_splats(n=300)
    splats["opacities"][:7] = 30.0  # alpha byte 255 in the .spz -> opacity 1 -> logit +inf
    spz = save_splats(tmp_path / "model.spz", splats, "spz")
    converted = tmp_path / "converted.ply"
    splat_transform(str(spz), str(converted))
    with pytest.warns(UserWarning, match="7 infinite opacity logit"):
        loaded = load_ply(converted)
    assert loaded["means"].shape == (300, 3) and torch.isfinite(loaded["opacities"]).all()
    compressed = tmp_path / "converted.compressed.ply"
    splat_transform(str(spz), str(compressed))
    assert load_splats(compressed)["means"].shape == (300, 3)
