"""Judging a model against the bundled world (``python -m nfsd_gs.score RUN_DIR``).

One home per concern: ``metrics`` (pure image metrics and the judge's accounting),
``ground_truth`` (the world's object from the evaluation cameras, and the alignment of a
trained object to it), ``judging`` (:class:`WorldJudge`, the one judge of a model in
memory, and :func:`score_run` for a run folder), ``__main__`` (the command line).
"""

from .ground_truth import (ALIGN_SCALES, ALIGN_YAWS, Alignment, SilhouetteBank,
                           compare_to_truth, eval_cameras, parse_scales, render_ground_truth,
                           render_model, scale_grid)
from .judging import (JUDGED_PRIOR, JudgeSettings, Judged, WorldJudge, expected_verdicts,
                      judges, load_judge, score_run, verdict_line)
from .metrics import (colour_error, coverage, delta_e76, laplacian_variance, mean_saturation,
                      score_views, silhouette_iou, speckle_fraction, srgb_to_lab)

__all__ = ["ALIGN_SCALES", "ALIGN_YAWS", "Alignment", "JUDGED_PRIOR", "JudgeSettings", "Judged",
           "SilhouetteBank", "WorldJudge", "colour_error", "compare_to_truth", "coverage",
           "delta_e76", "eval_cameras", "expected_verdicts", "judges", "laplacian_variance",
           "load_judge", "mean_saturation", "parse_scales", "render_ground_truth", "render_model",
           "scale_grid",
           "score_run", "score_views", "silhouette_iou", "speckle_fraction", "srgb_to_lab",
           "verdict_line"]
