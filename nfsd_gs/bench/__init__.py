"""GPU benchmark of the training step and of one whole asset (``python -m nfsd_gs.bench``).

``measure`` holds the library (the step against its floor, one asset end to end);
``__main__`` the command line.
"""
