"""nfsd_gs: text to 3D Gaussians with Noise-Free Score Distillation (Katzir et al., ICLR 2024).

Entry points: ``python -m nfsd_gs.train`` (optimize), ``nfsd_gs.eval`` (measure),
``nfsd_gs.bench`` (GPU speed), ``nfsd_gs.view`` / ``nfsd_gs.render`` (look at a ``.ply``).
"""

__version__ = "0.1.0"
