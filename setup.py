import glob
from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="nfsd_gs",
    version="0.1.0",
    description="Text-to-3D Gaussians with Noise-Free Score Distillation (NFSD), rasterized by gsplat",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["nfsd_gs", "nfsd_gs.*"]),
    include_package_data=True,
    # For regular (non-editable) installs: the presets (nfsd_gs.config._config_dir) and the
    # static web page (nfsd_gs.viewer.static._web_dir; npm ci there adds three.js and Spark).
    data_files=[("share/nfsd_gs/configs", sorted(glob.glob("configs/*.yaml"))),
                ("share/nfsd_gs/viewer/web", ["viewer/web/index.html", "viewer/web/package.json",
                                              "viewer/web/package-lock.json"])],
    package_data={"nfsd_gs": ["assets/**/*"]},
    install_requires=[
        "torch>=2.4",
        "gsplat>=1.5.3",
        "diffusers>=0.30",
        "transformers>=4.44",
        "tokenizers>=0.19",
        "safetensors",
        "plyfile>=1.0",  # every .ply read and written (nfsd_gs/formats/ply.py)
        "gsply>=0.4.6,<0.5",  # compressed .ply and .spz (nfsd_gs/formats), PlayCanvas/Niantic layouts
        "tqdm",
        "numpy",
        "accelerate",  # diffusers loads weights without a throw-away random init
        "peft>=0.18",  # VSD's LoRA, through diffusers' adapter support (guidance.method=vsd)
        "scipy",
        "Pillow",
        "omegaconf>=2.4",
        "pyyaml",
        "pillow",
        "imageio>=2.30",
        "imageio-ffmpeg",
        "trimesh>=4.0",
        "PyMCubes>=0.1.4",  # marching cubes: meshes from the Gaussians and from the NeRF
        "fast-simplification>=0.1",  # quadric decimation of those meshes (through trimesh)
        "xatlas>=0.0.11",  # UV atlas of the textured .glb (nfsd_gs/export/texture.py)
        "viser>=1.1,<2",  # --viewer and nfsd_gs.view; imported only when used
        "ray[client]>=2.60,<3",  # python -m nfsd_gs.batch: the catalogue (client: --address ray://)
    ],
    extras_require={
        # playwright drives the system's Chromium (never `playwright install`).
        # embreex: trimesh's ray casting (Embree) renders the textured mesh in tests/test_mesh.py.
        "dev": ["pytest>=7", "hypothesis>=6", "playwright>=1.40", "embreex>=4"],
    },
    entry_points={"console_scripts": [f"nfsd-gs-{name}=nfsd_gs.cli:{name}"
                                      for name in ("train", "view", "render", "export", "batch")]},
)
