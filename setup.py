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
    # The browser preview lives in the top-level viewer/ folder (the layout of
    # DESIGN.md) and is installed as the subpackage nfsd_gs.viewer.
    packages=find_packages(include=["nfsd_gs", "nfsd_gs.*"]) + ["nfsd_gs.viewer"],
    package_dir={"nfsd_gs.viewer": "viewer"},
    include_package_data=True,
    # the presets, for regular (non-editable) installs; see nfsd_gs.config._config_dir
    data_files=[("share/nfsd_gs/configs", sorted(glob.glob("configs/*.yaml")))],
    package_data={"nfsd_gs": ["assets/**/*"],
                  "nfsd_gs.viewer": ["web/*.html", "web/package.json", "web/package-lock.json"]},
    install_requires=[
        "torch>=2.4",
        "gsplat>=1.5.3",
        "diffusers>=0.30",
        "transformers>=4.44",
        "tokenizers>=0.19",
        "safetensors",
        "plyfile>=1.0",
        "tqdm",
        "numpy",
        "accelerate",  # diffusers loads weights without a throw-away random init
        "scipy",
        "Pillow",
        "omegaconf>=2.4",
        "pyyaml",
        "pillow",
        "imageio>=2.30",
        "imageio-ffmpeg",
        "trimesh>=4.0",
        "PyMCubes>=0.1.4",  # marching cubes for the NeRF backend's mesh export
        "viser>=1.1,<2",  # --viewer and nfsd_gs.view; imported only when used
        "ray[client]>=2.60,<3",  # python -m nfsd_gs.batch: the catalogue (client: --address ray://)
    ],
    extras_require={
        # playwright drives the system's Chromium (never `playwright install`).
        "dev": ["pytest>=7", "hypothesis>=6", "playwright>=1.40"],
    },
    entry_points={"console_scripts": ["nfsd-gs-train=nfsd_gs.train:main",
                                      "nfsd-gs-view=nfsd_gs.view:main",
                                      "nfsd-gs-render=nfsd_gs.render.__main__:main",
                                      "nfsd-gs-batch=nfsd_gs.batch.__main__:main"]},
)
