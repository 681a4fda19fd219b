"""The Python side of the browser views.  Importing the package imports nothing of viser.

* :mod:`.training`: ``TrainingViewer``, the live view behind
  ``python -m nfsd_gs.train ... --viewer`` (viser);
* :mod:`.ply_view`: ``serve_ply``, behind ``python -m nfsd_gs.view model.ply`` (viser);
* :mod:`.server`: the viser server and its splat node; :mod:`.splats` turns
  gsplat-layout parameters into what viser draws; :mod:`.ports`: free ports, URLs;
* :mod:`.static`: ``serve_page``, behind ``python -m nfsd_gs.view FILE --static``:
  the static Spark page of the top-level ``viewer/web/`` with one file.

The browser side (the static page, its npm packages) is the top-level
``viewer/``; the browser tests' Chromium driver is ``tests/browser/headless.py``.
"""
