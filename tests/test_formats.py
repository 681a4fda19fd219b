"""Splat formats (nfsd_gs/formats) and ``python -m nfsd_gs.export``: round trips, other tools'
layouts, bad input, and ``output.formats`` in a finished run."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plyfile import PlyData, PlyElement

from nfsd_gs.config import load_config
from nfsd_gs.errors import ConfigError, SplatFormatError
from nfsd_gs.export.__main__ import main as export_main
from nfsd_gs.formats import FORMATS, format_suffix, load_splats, save_splats
from nfsd_gs.formats.ply import save_ply
from nfsd_gs.render.sh import SH_C0
from test_ply import CUTS, EDITS, mutated

N = 700  # three compressed-PLY chunks, the last one partial


def object_splats(n: int = N, sh_degree: int = 3, seed: int = 0) -> dict:
    """Gaussians like a run's: an object of radius ~0.5, colours in [0, 1], log-scales ~ -4."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(n, 3, generator=g)
    return {
        "means": torch.rand(n, 3, generator=g) - 0.5,
        "scales": torch.rand(n, 3, generator=g) * 2 - 5,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) * 2,
        "sh0": ((rgb - 0.5) / SH_C0)[:, None, :],
        "shN": torch.randn(n, (sh_degree + 1) ** 2 - 1, 3, generator=g) * 0.1,
    }


def matched(loaded: dict, original: dict) -> torch.Tensor:
    """For each loaded splat, the index of the original at the same place (formats may reorder)."""
    index = torch.cdist(loaded["means"].double(), original["means"].double()).argmin(dim=1)
    assert len(set(index.tolist())) == len(index), "two splats decoded onto one"
    return index


#: format -> (max position error, expected SH degree after the round trip), from each format's
#: documented quantization (see nfsd_gs/formats/*.py): compressed PLY 10 bits on y over a
#: chunk's extent (<= the object's 1.0), SPZ 12 fractional bits, .splat exact float32.
POSITION_TOLERANCE = {"ply": 0.0, "ply-compressed": 1.0 / (2 * 1023) + 1e-6,
                      "splat": 0.0, "spz": 2.0 ** -13 + 1e-6}


@pytest.mark.parametrize("name", FORMATS)
def test_round_trip_within_the_format_quantization(tmp_path, name):
    splats = object_splats()
    path = save_splats(tmp_path / f"model{format_suffix(name)}", splats, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our own files need no repair
        loaded = load_splats(path)
    assert loaded["means"].shape == (N, 3) and loaded["quats"].shape == (N, 4)
    index = matched(loaded, splats)
    error = (loaded["means"] - splats["means"][index]).abs().max().item()
    assert error <= POSITION_TOLERANCE[name], error
    color = lambda s: (s["sh0"][:, 0] * SH_C0 + 0.5).clamp(0, 1)  # noqa: E731
    assert (color(loaded) - color(splats)[index]).abs().max().item() <= 2 / 255
    opacity = (torch.sigmoid(loaded["opacities"]) - torch.sigmoid(splats["opacities"][index]))
    assert opacity.abs().max().item() <= 1 / 255
    expected_rest = 0 if name == "splat" else 15
    assert loaded["shN"].shape == (N, expected_rest, 3)
    if name == "ply":
        for key in splats:
            assert torch.equal(loaded[key], splats[key]), key


def test_compressed_sizes_are_smaller(tmp_path):
    splats = object_splats()
    sizes = {name: save_splats(tmp_path / f"m{format_suffix(name)}", splats, name).stat().st_size
             for name in FORMATS}
    assert sizes["ply"] == N * 62 * 4 + len(b"ply\nformat binary_little_endian 1.0\n") + \
        len(f"element vertex {N}\n") + sum(len(f"property float {p}\n") for p in ply_names()) + 11
    assert sizes["ply-compressed"] < sizes["ply"] / 3 and sizes["spz"] < sizes["ply"] / 4
    assert sizes["splat"] == 32 * N


def ply_names():
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(45)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def rewritten(path: Path, out: Path, edit) -> Path:
    """The PLY at ``path`` with its elements rebuilt by ``edit(dict of tables)`` (plyfile)."""
    ply = PlyData.read(str(path))
    tables = edit({e.name: e.data for e in ply.elements})
    byte_order = tables.pop("__byte_order__", "<")
    from numpy.lib.recfunctions import repack_fields

    PlyData([PlyElement.describe(repack_fields(t), name) for name, t in tables.items()],
            byte_order=byte_order).write(str(out))
    return out


def test_compressed_ply_of_other_writers_orders_and_older_chunks(tmp_path):
    """Any property order, big endian, and the 12-property chunks (colours over [0, 1])."""
    splats = object_splats(sh_degree=0)
    source = save_splats(tmp_path / "m.compressed.ply", splats, "ply-compressed")
    reference = load_splats(source)

    def reorder(tables):
        tables["vertex"] = tables["vertex"][list(reversed(tables["vertex"].dtype.names))]
        tables["__byte_order__"] = ">"
        return tables

    other = load_splats(rewritten(source, tmp_path / "other.ply", reorder))
    for key in reference:
        assert torch.equal(other[key], reference[key]), key

    def older(tables):  # recompute the packed colours over [0, 1] and drop the colour bounds
        chunk, vertex = tables["chunk"], tables["vertex"]
        color = vertex["packed_color"].astype(np.int64)
        which = np.arange(len(vertex)) // 256
        for shift, lo, hi in ((24, "min_r", "max_r"), (16, "min_g", "max_g"), (8, "min_b", "max_b")):
            value = chunk[lo][which] + ((color >> shift) & 255) / 255 * (chunk[hi] - chunk[lo])[which]
            color = (color & ~(255 << shift)) | (np.clip(np.round(value * 255), 0, 255).astype(np.int64) << shift)
        vertex = vertex.copy()
        vertex["packed_color"] = color.astype(np.uint32)
        keep = [n for n in chunk.dtype.names if not n[-1] in "rgb" or "scale" in n]
        return {"chunk": chunk[keep], "vertex": vertex}

    old = load_splats(rewritten(source, tmp_path / "old.ply", older))
    color = lambda s: s["sh0"][:, 0] * SH_C0 + 0.5  # noqa: E731
    assert (color(old) - color(reference)).abs().max().item() <= 1.01 / 255
    assert torch.equal(old["means"], reference["means"])


@pytest.mark.parametrize("name", ["ply-compressed", "splat", "spz"])
def test_loaders_refuse_damage_in_one_line(tmp_path, name):
    path = save_splats(tmp_path / f"m{format_suffix(name)}", object_splats(n=300), name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 - 5])  # not a whole number of .splat rows
    with pytest.raises(SplatFormatError) as info:
        load_splats(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_compressed_ply_with_wrong_chunk_count_is_refused(tmp_path):
    source = save_splats(tmp_path / "m.compressed.ply", object_splats(), "ply-compressed")
    bad = rewritten(source, tmp_path / "bad.ply",
                    lambda t: {"chunk": t["chunk"][:1], "vertex": t["vertex"], "sh": t["sh"]})
    with pytest.raises(SplatFormatError, match="1 chunks for 700 splats"):
        load_splats(bad)


VALID = {}


def valid_bytes(name: str) -> bytes:
    if name not in VALID:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = save_splats(Path(folder) / f"m{format_suffix(name)}",
                               object_splats(n=300, sh_degree=1), name)
            VALID[name] = path.read_bytes()
    return VALID[name]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["ply-compressed", "splat", "spz"]), edits=EDITS, cut=CUTS)
def test_fuzz_other_formats_load_or_refuse(tmp_path, name, edits, cut):
    path = tmp_path / f"fuzz{format_suffix(name)}"
    path.write_bytes(mutated(valid_bytes(name), edits, cut))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            splats = load_splats(path)
    except SplatFormatError as err:
        assert "\n" not in str(err)
        return
    n = splats["means"].shape[0]
    assert n > 0 and all(torch.isfinite(v).all() for v in splats.values())


def test_unknown_suffix_is_one_line(tmp_path):
    (tmp_path / "m.xyz").write_bytes(b"0")
    with pytest.raises(SplatFormatError, match="unknown splat file type '.xyz'"):
        load_splats(tmp_path / "m.xyz")


# ----------------------------------------------------------------------------- other readers


def test_compressed_ply_opens_in_view_render_and_init(tmp_path):
    """Issue 15.4: a compressed .ply was "a mesh/point cloud"; view, render and init read it now."""
    from nfsd_gs.init import initial_splats
    from nfsd_gs.viewer.ply_view import framing_view
    from nfsd_gs.viewer.splats import splat_cloud

    splats = object_splats(n=300, sh_degree=1)
    path = save_splats(tmp_path / "scene.compressed.ply", splats, "ply-compressed")
    config = load_config(None, ["init.kind=file", f"init.path={path}"])
    loaded = initial_splats(config.init, sh_degree=1)
    assert loaded["means"].shape == (300, 3) and loaded["shN"].shape == (300, 3, 3)
    cloud = splat_cloud(load_splats(path))  # what view.py shows
    assert len(cloud) == 300 and framing_view(cloud).radius > 0
    from nfsd_gs.render.__main__ import main as render_main

    assert render_main([str(path), "--frames", "2", "--resolution", "16", "--no-progress",
                        "--device", "cpu"]) == 0
    assert (tmp_path / "scene.compressed.mp4").is_file() or \
        any(p.suffix in (".mp4", ".gif") for p in tmp_path.iterdir())


# ----------------------------------------------------------------------------- export command


def write_run(folder: Path) -> Path:
    folder.mkdir()
    save_ply(folder / "model.ply", object_splats(n=300))
    return folder


@pytest.mark.parametrize("name", FORMATS)
def test_export_command_writes_each_format(tmp_path, capsys, name):
    run = write_run(tmp_path / "run")
    args = [str(run), "--format", name] + (["-o", str(tmp_path / "copy.ply")] if name == "ply" else [])
    assert export_main(args) == 0
    out = tmp_path / "copy.ply" if name == "ply" else run / f"model{format_suffix(name)}"
    assert capsys.readouterr().err.startswith(f"wrote {out}")
    assert load_splats(out)["means"].shape == (300, 3)


def test_export_format_from_the_output_suffix(tmp_path):
    run = write_run(tmp_path / "run")
    assert export_main([str(run / "model.ply"), "-o", str(tmp_path / "a.compressed.ply")]) == 0
    assert PlyData.read(str(tmp_path / "a.compressed.ply"))["chunk"].count == 2


@pytest.mark.parametrize("case, fragment", [
    ("empty_run", "a run folder without model.ply"),
    ("mesh", "not 3D Gaussians"),
    ("unknown_format", "unknown format 'gltf'"),
    ("no_such", "no such file or run folder"),
    ("same_file", "overwrite its source"),
    ("folder_out", "is a folder"),
])
def test_export_bad_input_is_one_line_and_no_file(tmp_path, capsys, case, fragment):
    run = write_run(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    mesh = tmp_path / "mesh.ply"
    vertices = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    PlyData([PlyElement.describe(vertices, "vertex"), PlyElement.describe(faces, "face")]).write(
        str(mesh))
    out = tmp_path / "out" / "result.spz"
    args = {"empty_run": [str(tmp_path / "empty"), "-o", str(out)],
            "mesh": [str(mesh), "-o", str(out)],
            "unknown_format": [str(run), "--format", "gltf", "-o", str(out)],
            "no_such": [str(tmp_path / "nothing"), "-o", str(out)],
            "same_file": [str(run / "model.ply"), "--format", "ply"],
            "folder_out": [str(run), "--format", "spz", "-o", str(tmp_path / "empty")]}[case]
    before = sorted(p.name for p in run.iterdir())
    assert export_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err and len(err.splitlines()) == 1, err
    assert not out.parent.exists() or not any(out.parent.iterdir())
    assert sorted(p.name for p in run.iterdir()) == before
    assert not any((tmp_path / "empty").iterdir())


def test_a_failing_writer_leaves_no_file(tmp_path, monkeypatch):
    import gsply

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gsply, "write_spz", broken)
    with pytest.raises(RuntimeError):
        save_splats(tmp_path / "m.spz", object_splats(n=10), "spz")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- runs


def test_output_formats_of_a_finished_run(tmp_path):
    from nfsd_gs.representations import GaussianModel

    config = load_config(None, ["output.formats=[ply,spz,splat]"])
    model = GaussianModel(object_splats(n=50), config.gaussians, config.render)
    assert model.export(tmp_path, config.output) == tmp_path / "model.ply"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ply", "model.splat", "model.spz"]
    assert load_config(None).output.formats == ["ply"]


def test_unknown_output_format_names_the_key():
    with pytest.raises(ConfigError, match="output.formats"):
        load_config(None, ["output.formats=[ply,gltf]"])
