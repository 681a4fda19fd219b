"""Outputs: turntable videos (video.py), NeRF meshes (mesh.py) and ``python -m nfsd_gs.export``
(a run's Gaussians in other splat formats, __main__.py); the files themselves: nfsd_gs.formats."""
