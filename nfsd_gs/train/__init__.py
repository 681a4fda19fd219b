"""The trainer: one asset made from a config and a (possibly shared) diffusion prior.

``python -m nfsd_gs.train --prompt "a red cone"`` is its command line (``__main__.py``);
the library is in these modules, imported from where they live:

* ``run``: :class:`~nfsd_gs.train.run.Run` (the components of one optimization),
  ``build_run``, ``start_run`` (and the one rule for a run folder's name), and the run's
  checkpoint, captured and restored (``nfsd_gs.checkpoint.Checkpoint``);
* ``step``: one training step, in the parts a several-assets engine reuses
  (``render_and_encode``, the guidance, ``apply_gradients``);
* ``loop``: ``train`` (steps, logging, snapshots, checkpoints, stop requests);
* ``resume``: what ``--resume`` may change, ``resume_run``, ``open_run`` (continue or
  start in a given folder: the catalogue's rule);
* ``outputs``: what a finished run writes besides the model (turntable, mesh) and the
  live viewer.

Nothing is imported here: ``python -m nfsd_gs.train`` installs its Ctrl-C handler before
torch is imported. The data path of one step is drawn in ``docs/ARCHITECTURE.md``.
"""
