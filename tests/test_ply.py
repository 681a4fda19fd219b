"""The 3DGS ``.ply`` writer and loader (nfsd_gs/formats/ply.py, on plyfile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plyfile import PlyData, PlyElement

from nfsd_gs.errors import PlyFormatError
from nfsd_gs.formats.ply import (MESH_HINT, is_gaussians, load_ply, read_ply_header, save_ply,
                                splats_to_table)

DATA = Path(__file__).parent / "data"


def random_splats(n: int = 7, sh_degree: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2
    return {
        "means": torch.randn(n, 3, generator=g),
        "scales": torch.randn(n, 3, generator=g) - 3,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g),
        "sh0": torch.randn(n, 1, 3, generator=g),
        "shN": torch.randn(n, k - 1, 3, generator=g),
    }


def write_with_plyfile(path: Path, columns: dict, extra_elements=(), text: bool = False) -> Path:
    """A .ply written by another library, with properties in the order given."""
    n = len(next(iter(columns.values())))
    table = np.empty(n, dtype=[(name, values.dtype.str) for name, values in columns.items()])
    for name, values in columns.items():
        table[name] = values
    PlyData([PlyElement.describe(table, "vertex"), *extra_elements], text=text).write(str(path))
    return path


def inria_columns(splats: dict) -> dict:
    """The 3DGS writer's columns, built independently of save_ply: [N,K-1,3] -> [N,3,K-1]."""
    n = splats["means"].shape[0]
    rest = splats["shN"].transpose(1, 2).reshape(n, -1).numpy()  # channel-major
    columns = {}
    for i, axis in enumerate("xyz"):
        columns[axis] = splats["means"][:, i].numpy()
    for i in range(3):
        columns[f"f_dc_{i}"] = splats["sh0"][:, 0, i].numpy()
    for i in range(rest.shape[1]):
        columns[f"f_rest_{i}"] = rest[:, i]
    columns["opacity"] = splats["opacities"].numpy()
    for i in range(3):
        columns[f"scale_{i}"] = splats["scales"][:, i].numpy()
    for i in range(4):
        columns[f"rot_{i}"] = splats["quats"][:, i].numpy()
    return columns


@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
def test_round_trip_is_exact(tmp_path, sh_degree):
    splats = random_splats(sh_degree=sh_degree)
    save_ply(tmp_path / "m.ply", splats)
    loaded = load_ply(tmp_path / "m.ply")
    assert set(loaded) == set(splats)
    for key, value in splats.items():
        assert loaded[key].dtype == torch.float32
        assert torch.equal(loaded[key], value), key


def test_layout_matches_inria_writer(tmp_path):
    splats = random_splats(n=4, sh_degree=1)
    save_ply(tmp_path / "m.ply", splats)
    ply = PlyData.read(str(tmp_path / "m.ply"))
    assert ply.header.splitlines()[1] == "format binary_little_endian 1.0"
    names = ply["vertex"].data.dtype.names
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(9)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert list(names) == expected
    assert all(ply["vertex"].data.dtype[name] == np.dtype("<f4") for name in names)
    data = ply["vertex"].data
    # Channel-major by hand: f_rest_0..2 are R of coefficients 1..3, then G, then B.
    shN = splats["shN"].numpy()  # [N, 3, 3] = [N, coefficient, channel]
    hand = np.concatenate([shN[:, :, 0], shN[:, :, 1], shN[:, :, 2]], axis=1)  # [N, 9]
    got = np.stack([data[f"f_rest_{i}"] for i in range(9)], axis=1)
    np.testing.assert_array_equal(got, hand)
    np.testing.assert_array_equal(data["nx"], 0)
    np.testing.assert_array_equal(data["rot_0"], splats["quats"][:, 0].numpy())  # w first
    np.testing.assert_array_equal(data["opacity"], splats["opacities"].numpy())  # logit, raw


def test_other_tool_order_and_extra_properties(tmp_path):
    splats = random_splats(n=6, sh_degree=2)
    columns = inria_columns(splats)
    shuffled = dict(reversed(list(columns.items())))
    shuffled["confidence"] = np.ones(6, np.float32)  # extra: ignored
    shuffled["red"] = np.full(6, 200, np.uint8)
    path = write_with_plyfile(tmp_path / "other.ply", shuffled)
    loaded = load_ply(path)
    for key, value in splats.items():
        assert torch.equal(loaded[key], value), key


def test_big_endian_double_and_ascii_files_load(tmp_path):
    splats = random_splats(n=3, sh_degree=1)
    columns = {k: v.astype(">f8") for k, v in inria_columns(splats).items()}
    loaded = load_ply(write_with_plyfile(tmp_path / "be.ply", columns))
    torch.testing.assert_close(loaded["shN"], splats["shN"])
    text = write_with_plyfile(tmp_path / "a.ply", inria_columns(splats), text=True)
    torch.testing.assert_close(load_ply(text)["means"], splats["means"])


def test_header_detects_gaussians(tmp_path):
    save_ply(tmp_path / "m.ply", random_splats())
    assert is_gaussians(read_ply_header(tmp_path / "m.ply"))


def reference_splats(n: int, sh_degree: int) -> dict:
    """Closed-form values (no RNG), the ones tests/data/reference_sh*.ply were written from."""
    k = (sh_degree + 1) ** 2

    def wave(offset, *shape):
        count = int(np.prod(shape))
        values = np.sin(np.arange(count, dtype=np.float64) * 0.7 + offset).astype(np.float32)
        return torch.from_numpy(values.reshape(shape))

    return {"means": wave(0.0, n, 3), "scales": wave(1.0, n, 3) - 4, "quats": wave(2.0, n, 4),
            "opacities": wave(3.0, n) * 3, "sh0": wave(4.0, n, 1, 3),
            "shN": wave(5.0, n, k - 1, 3) * 0.2}


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_same_bytes_as_the_old_writer(tmp_path, sh_degree):
    """tests/data/reference_sh*.ply were written by the hand-written writer this module replaced."""
    save_ply(tmp_path / "model.ply", reference_splats(6, sh_degree))
    reference = (DATA / f"reference_sh{sh_degree}.ply").read_bytes()
    assert (tmp_path / "model.ply").read_bytes() == reference


# ----------------------------------------------------------------------------- errors


def assert_one_line_error(path, fragment: str):
    with pytest.raises(PlyFormatError) as info:
        load_ply(path)
    message = str(info.value)
    assert "\n" not in message and fragment in message, message
    return message


def test_missing_file(tmp_path):
    assert_one_line_error(tmp_path / "nope.ply", "no such file")


def test_not_a_ply(tmp_path):
    (tmp_path / "x.ply").write_bytes(b"\x89PNG\r\n not a ply")
    assert_one_line_error(tmp_path / "x.ply", "not a PLY file")


def test_truncated(tmp_path):
    save_ply(tmp_path / "m.ply", random_splats(n=10))
    data = (tmp_path / "m.ply").read_bytes()
    (tmp_path / "t.ply").write_bytes(data[:-7])
    assert_one_line_error(tmp_path / "t.ply", "truncated")
    (tmp_path / "h.ply").write_bytes(data[:40])
    assert_one_line_error(tmp_path / "h.ply", "end_header")


def test_no_vertex_element(tmp_path):
    table = np.zeros(3, dtype=[("a", "f4")])
    path = tmp_path / "nv.ply"
    PlyData([PlyElement.describe(table, "thing")]).write(str(path))
    assert_one_line_error(path, "no 'vertex' element")


def test_missing_properties_are_named(tmp_path):
    columns = inria_columns(random_splats(n=3, sh_degree=0))
    del columns["scale_1"], columns["rot_3"]
    message = assert_one_line_error(write_with_plyfile(tmp_path / "m.ply", columns), "missing")
    assert "scale_1" in message and "rot_3" in message


def test_wrong_rest_count(tmp_path):
    columns = inria_columns(random_splats(n=3, sh_degree=1))
    del columns["f_rest_8"]
    assert_one_line_error(write_with_plyfile(tmp_path / "m.ply", columns), "8 f_rest")


def test_zero_vertices(tmp_path):
    save_ply(tmp_path / "m.ply", random_splats(n=0))
    assert_one_line_error(tmp_path / "m.ply", "zero Gaussians")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_values(tmp_path, value):
    columns = inria_columns(random_splats(n=4))
    columns["scale_2"] = columns["scale_2"].copy()
    columns["scale_2"][2] = value
    message = assert_one_line_error(write_with_plyfile(tmp_path / "m.ply", columns), "non-finite")
    assert "scale_2" in message


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_opacity_logits_of_other_tools_are_clamped(tmp_path, value):
    """PlayCanvas splat-transform writes an opacity of exactly 1 as a +inf logit."""
    columns = inria_columns(random_splats(n=5))
    columns["opacity"] = columns["opacity"].copy()
    columns["opacity"][[1, 3]] = value
    with pytest.warns(UserWarning, match="2 infinite opacity logit"):
        loaded = load_ply(write_with_plyfile(tmp_path / "st.ply", columns))
    assert torch.isfinite(loaded["opacities"]).all()
    expected = 1.0 if value > 0 else 0.0
    torch.testing.assert_close(torch.sigmoid(loaded["opacities"][[1, 3]]),
                               torch.full((2,), expected), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(loaded["opacities"][[0, 2, 4]].numpy(), columns["opacity"][[0, 2, 4]])


@pytest.mark.parametrize("property_name, value", [("x", float("nan")), ("z", float("inf")),
                                                  ("opacity", float("nan"))])
def test_nan_positions_and_opacities_are_still_refused(tmp_path, property_name, value):
    columns = inria_columns(random_splats(n=4))
    columns[property_name] = columns[property_name].copy()
    columns[property_name][1] = value
    message = assert_one_line_error(write_with_plyfile(tmp_path / "m.ply", columns), "non-finite")
    assert f"'{property_name}'" in message and "vertex 1" in message


def test_mesh_is_refused_with_a_hint(tmp_path):
    vertices = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    mesh = tmp_path / "mesh.ply"
    PlyData([PlyElement.describe(vertices, "vertex"), PlyElement.describe(faces, "face")]).write(
        str(mesh))
    assert_one_line_error(mesh, MESH_HINT)


def test_point_cloud_is_refused_with_a_hint(tmp_path):
    columns = {"x": np.zeros(3, np.float32), "y": np.zeros(3, np.float32),
               "z": np.zeros(3, np.float32), "red": np.zeros(3, np.uint8)}
    assert_one_line_error(write_with_plyfile(tmp_path / "pc.ply", columns), "init.kind=file")


def test_save_refuses_bad_splats(tmp_path):
    splats = random_splats(n=3)
    splats["quats"] = splats["quats"][:, :3]
    with pytest.raises(PlyFormatError, match="quats"):
        save_ply(tmp_path / "m.ply", splats)
    assert not (tmp_path / "m.ply").exists()


# ----------------------------------------------------------------------------- fuzz

VALID = {}


def valid_file_bytes(sh_degree: int) -> bytes:
    if sh_degree == "ascii":
        if "ascii" not in VALID:
            import io

            buffer = io.BytesIO()
            columns = inria_columns(random_splats(n=4, sh_degree=1))
            table = np.empty(4, dtype=[(name, "f4") for name in columns])
            for name, values in columns.items():
                table[name] = values
            PlyData([PlyElement.describe(table, "vertex")], text=True).write(buffer)
            VALID["ascii"] = buffer.getvalue()
        return VALID["ascii"]
    if sh_degree not in VALID:
        import io

        table = splats_to_table(random_splats(n=5, sh_degree=sh_degree))
        buffer = io.BytesIO()
        PlyData([PlyElement.describe(table, "vertex")], byte_order="<").write(buffer)
        VALID[sh_degree] = buffer.getvalue()
    return VALID[sh_degree]


def check_loads_or_refuses(path: Path) -> None:
    try:
        splats = load_ply(path)
    except PlyFormatError as err:
        assert "\n" not in str(err)
        return
    n = splats["means"].shape[0]
    assert n > 0
    assert splats["sh0"].shape == (n, 1, 3) and splats["quats"].shape == (n, 4)
    assert splats["shN"].shape[0] == n and splats["shN"].shape[2] == 3
    assert all(torch.isfinite(v).all() for v in splats.values())


#: Up to 6 bytes overwritten at relative positions, then maybe cut at a relative length.
EDITS = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6)
CUTS = st.one_of(st.none(), st.floats(0, 1))


def mutated(valid: bytes, edits, cut) -> bytes:
    data = bytearray(valid)
    for where, byte in edits:
        data[int(where * len(data))] = byte
    return bytes(data if cut is None else data[: int(cut * len(data))])


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sh_degree=st.sampled_from([0, 1, "ascii"]), edits=EDITS, cut=CUTS)
def test_fuzz_mutated_files_never_crash(tmp_path, sh_degree, edits, cut):
    path = tmp_path / "fuzz.ply"
    path.write_bytes(mutated(valid_file_bytes(sh_degree), edits, cut))
    check_loads_or_refuses(path)


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header_line=st.sampled_from(range(1, 30)), text=st.text(max_size=30))
def test_fuzz_header_lines(tmp_path, header_line, text):
    """Replace one header line with arbitrary text (counts, types, keywords, unicode)."""
    data = valid_file_bytes(1)
    end = data.index(b"end_header\n")
    lines = data[:end].split(b"\n")
    lines[header_line % len(lines)] = text.encode("utf-8")
    path = tmp_path / "fuzz.ply"
    path.write_bytes(b"\n".join(lines) + data[end:])
    check_loads_or_refuses(path)


def test_ascii_header_with_a_huge_count_is_refused_quickly(tmp_path):
    path = tmp_path / "huge.ply"
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
             "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    header = ["ply", "format ascii 1.0", "element vertex 2000000000"]
    header += [f"property float {n}" for n in names] + ["end_header", " ".join(["0"] * 14)]
    path.write_text("\n".join(header) + "\n")
    assert_one_line_error(path, "truncated")
