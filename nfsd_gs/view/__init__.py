"""``python -m nfsd_gs.view FILE``: 3D Gaussians in the browser (the command; the viewer
itself is :mod:`nfsd_gs.viewer`)."""
