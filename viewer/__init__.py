"""The browser preview: viser's web client showing our Gaussians.

Installed as ``nfsd_gs.viewer`` (setup.py maps this folder there).  Importing
the package imports nothing of viser; the modules that do are

* :mod:`nfsd_gs.viewer.training` — ``TrainingViewer``, the live view behind
  ``python -m nfsd_gs.train ... --viewer``;
* :mod:`nfsd_gs.viewer.ply_view` — ``serve_ply``, behind
  ``python -m nfsd_gs.view model.ply``;
* :mod:`nfsd_gs.viewer.server` — the viser server and its splat node.

:mod:`nfsd_gs.viewer.splats` turns gsplat-layout parameters into what the
browser draws; :mod:`nfsd_gs.viewer.headless` drives headless Chromium for the
browser tests and ``bench_viewer.py``; ``web/`` is a page that opens a
``.ply`` in Spark, an independent three.js splat renderer from npm.
"""
