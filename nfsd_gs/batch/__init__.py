"""A catalogue of assets on Ray: ``python -m nfsd_gs.batch PROMPTS`` (``--help``).

``catalogue`` reads the PROMPTS file and resolves each line's config, ``cluster`` starts or
joins Ray and sizes the workers, ``worker`` is the actor that makes assets through the
trainer (``--assets-per-worker`` at once, in the trainer's pool: ``nfsd_gs.train.batched``),
``scheduler`` hands lines to free slots, retries and records them in ``manifest``.
"""
