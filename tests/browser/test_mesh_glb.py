"""A textured ``.glb`` (export/texture.py) in a browser: three.js' own GLTFLoader (npm, viewer/web)
reads it, its material has the baked texture as ``map``, and a render shows the object's colours
where they belong.

The object is a cube of Gaussians whose -y half is red and +y half blue; the camera looks from
+x with z up (our orbit convention), so red must fill the left half of the screenshot and blue
the right: a texture read upside down, transposed or not at all would not pass.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch

from browser.headless import red_left_blue_right, wait_for_image
from nfsd_gs.export.mesh import MeshSettings, export_mesh
from nfsd_gs.render.sh import rgb_to_sh0

from .conftest import require

pytestmark = pytest.mark.browser

WEB_DIR = Path(__file__).resolve().parents[2] / "viewer" / "web"
TEXTURE = 128
TIMEOUT_S = 60.0

#: three.js from viewer/web/node_modules: load ``model.glb`` with GLTFLoader, light it (ambient
#: plus a light at the camera: the material is PBR, metallic 0, roughness 1), look from +x
#: with z up, render once and report what the loaded material holds.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><style>html, body { margin: 0; background: #fff; }</style>
<script type="importmap">
{ "imports": { "three": "./node_modules/three/build/three.module.js",
               "three/addons/": "./node_modules/three/examples/jsm/" } }
</script></head>
<body><script type="module">
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";

const renderer = new THREE.WebGLRenderer({ antialias: false, preserveDrawingBuffer: true });
renderer.setSize(innerWidth, innerHeight);
document.body.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.background = new THREE.Color(1, 1, 1);
const camera = new THREE.PerspectiveCamera(40, innerWidth / innerHeight, 0.01, 100);
camera.up.set(0, 0, 1);
camera.position.set(2.75, 0, 0);
camera.lookAt(0, 0, 0);
scene.add(new THREE.AmbientLight(0xffffff, 1.5));
const light = new THREE.DirectionalLight(0xffffff, 1.5);
light.position.copy(camera.position);
scene.add(light);
new GLTFLoader().load("model.glb", (gltf) => {
  scene.add(gltf.scene);
  const meshes = [];
  gltf.scene.traverse((node) => { if (node.isMesh) meshes.push(node); });
  const mesh = meshes[0];
  const map = mesh.material.map;
  renderer.render(scene, camera);
  window.glbInfo = {
    meshes: meshes.length, material: mesh.material.type,
    map: map ? [map.image.width, map.image.height] : null,
    colorSpace: map ? map.colorSpace : null,
    uvs: mesh.geometry.attributes.uv ? mesh.geometry.attributes.uv.count : 0,
    vertices: mesh.geometry.attributes.position.count,
    normals: Boolean(mesh.geometry.attributes.normal),
  };
}, undefined, (error) => { window.glbError = String(error); });
</script></body></html>
"""


def red_blue_cube(per_side: int = 10) -> dict:
    """Gaussians filling a cube (the unit object's size), red where y < 0, blue where y > 0."""
    half = 0.29
    spacing = 2 * half / per_side
    axis = torch.linspace(-half + spacing / 2, half - spacing / 2, per_side)
    means = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).view(-1, 3)
    n = len(means)
    rgb = torch.where(means[:, 1:2] < 0, torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.9]))
    return {"means": means, "scales": torch.full((n, 3), float(torch.log(torch.tensor(0.5 * spacing)))),
            "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
            "opacities": torch.full((n,), 3.0), "sh0": rgb_to_sh0(rgb)[:, None, :],
            "shN": torch.zeros(n, 0, 3)}


@contextlib.contextmanager
def serve(folder: Path):
    """``folder`` over HTTP on a free localhost port; yields the base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # noqa: ARG002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_three_js_loads_the_textured_glb_and_shows_its_colours(page, tmp_path):
    require((WEB_DIR / "node_modules" / "three" / "examples" / "jsm" / "loaders" / "GLTFLoader.js").is_file(),
            f"three.js is not installed (npm ci --prefix {WEB_DIR}; .ci/run does)")
    site = tmp_path / "site"
    site.mkdir()
    (site / "node_modules").symlink_to(WEB_DIR / "node_modules", target_is_directory=True)
    (site / "index.html").write_text(PAGE)
    mesh = export_mesh(red_blue_cube(), site / "model.glb",
                       MeshSettings(resolution=32, texture=TEXTURE), device="cpu")
    with serve(site) as url:
        page.goto(url + "index.html")
        page.wait_for_function("window.glbInfo !== undefined || window.glbError !== undefined",
                               timeout=TIMEOUT_S * 1000)
        assert page.evaluate("window.glbError") is None, page.evaluate("window.glbError")
        info = page.evaluate("window.glbInfo")
        assert info["meshes"] == 1 and info["material"] == "MeshStandardMaterial", info
        assert info["map"] == [TEXTURE, TEXTURE] and info["colorSpace"] == "srgb", info
        assert info["uvs"] == info["vertices"] == len(mesh.vertices) and info["normals"], info
        ok, counts = wait_for_image(page, red_left_blue_right, tmp_path / "glb.png",
                                    timeout_s=TIMEOUT_S)
    assert ok, (f"expected red on the left and blue on the right, got {counts}; see "
                f"{tmp_path / 'glb.png'}; browser said: {page.console_messages[-10:]}")
