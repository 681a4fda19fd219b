"""Evaluation: train a fixed prompt set with several methods and score every result.

``python -m nfsd_gs.eval`` (``--help`` for the options) runs, for every variant
(a config preset + overrides, e.g. ``nfsd@7.5``, ``sds@100``), every prompt of the
bundled world's evaluation set ("a red cone", ...) and every seed:

1. train (seeded; the prior is loaded once and shared by all runs);
2. render 8 views around the object (azimuths 0, 45, ..., 315 at the config's
   evaluation elevation, radius and fov) over the fixed background, and the
   ground-truth object (the world's ray caster) from the same cameras;
3. score both with the judge (fraction of views named as the prompt's shape /
   colour), saturation, sharpness, coverage and speckle; align the ground truth's
   scale and yaw to ours and measure silhouette IoU and CIELAB colour error there;
   plus training wall time.

``--comparison`` runs issue 18's comparison (NFSD@7.5, SDS@7.5, SDS@100, NFSD
without its negative term, and NFSD@7.5 on the NeRF backend; seeds 0, 1, 2).
Results go to ``--out`` as ``results.json`` and ``results.md`` (rewritten
atomically after every run, so an interrupted evaluation keeps what it did and
is continued by running the same command with the same ``--out``), and one
PNG strip per run (our views above the aligned ground truth's) under ``strips/``;
``--worst N`` adds ``worst.png`` and ``worst.md``: each variant's N worst runs' strips
on one sheet (``scripts/merge_eval.py --worst N`` for merged folders).

One home per concern: ``prompts`` (splits, prompt sets, the object a prompt names),
``variants`` (the methods), ``runner`` (train and score one run, resume), ``report``
(summaries and tables), ``worst`` (the worst runs' sheet), ``__main__`` (the command line). Scoring itself is the one judge
of :mod:`nfsd_gs.score` (metrics, ground truth and alignment), shared with the end of a
run and the catalogue.
"""

from .prompts import ObjectSpec, all_prompts, parse_prompt, split_prompts
from .report import format_markdown, summarize, summary_table, write_results
from .runner import Settings, evaluate, run_config
from .variants import COMPARISON_VARIANTS, DEFAULT_VARIANTS, LEVER_VARIANTS, VARIANTS, Variant

__all__ = ["COMPARISON_VARIANTS", "DEFAULT_VARIANTS", "LEVER_VARIANTS", "ObjectSpec", "Settings", "VARIANTS",
           "Variant", "all_prompts", "evaluate", "format_markdown", "parse_prompt",
           "run_config", "split_prompts", "summarize", "summary_table", "write_results"]
