"""Outputs: the INRIA 3DGS ``.ply`` (ply.py), turntable videos (video.py), NeRF meshes (mesh.py)."""
