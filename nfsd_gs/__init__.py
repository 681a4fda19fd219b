"""nfsd_gs: text to 3D Gaussians with Noise-Free Score Distillation (Katzir et al., ICLR 2024).

A library with commands on top (``docs/ARCHITECTURE.md``). Commands: ``python -m
nfsd_gs.train`` (optimize), ``nfsd_gs.score`` (judge a run), ``nfsd_gs.eval`` (measure),
``nfsd_gs.batch`` (a catalogue), ``nfsd_gs.bench`` (GPU speed), ``nfsd_gs.view`` /
``nfsd_gs.render`` / ``nfsd_gs.export`` (look at, film, convert a ``.ply``),
``nfsd_gs.shapeworld`` (the bundled world's weights).
"""

__version__ = "0.1.0"
