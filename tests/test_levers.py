"""Issue 21's levers: the opacity reset gsplat 1.5.3 never makes, the grad2d statistics,
the Gaussians' geometry terms, the elevation range, and the screening variants."""

from __future__ import annotations

import gsplat
import pytest
import torch

from nfsd_gs.background import sample_backgrounds
from nfsd_gs.cameras import OrbitSampler, view_prompts
from nfsd_gs.config import NFSD_NEGATIVE_PROMPT, load_config
from nfsd_gs.densify import GRAD2D_LADDER, Densifier, grad2d_statistics
from nfsd_gs.eval.runner import Settings, run_config
from nfsd_gs.eval.variants import LEVER_VARIANTS, SHARPENING_VARIANTS, VARIANTS, select_variants
from nfsd_gs.init import initial_splats
from nfsd_gs.errors import ConfigError
from nfsd_gs.render.sh import SH_C0 as C0
from nfsd_gs.representations import GaussianModel
from nfsd_gs.representations.gaussians import CHARBONNIER_EPS, NEIGHBOUR_REFRESH
from nfsd_gs.train.run import build_run
from nfsd_gs.train.step import training_step


def tiny(*overrides):
    config = load_config("tiny_test", ["prompt=a red cube", *overrides])
    splats = initial_splats(config.init, config.gaussians.sh_degree)
    return config, GaussianModel(splats, config.gaussians, config.render, scene_extent=1.0)


def render_and_backward(model, config):
    """One render of 2 views and a loss whose gradient reaches every visible Gaussian."""
    cameras = OrbitSampler(config.camera).sample(2, torch.Generator().manual_seed(0))
    out = model.render(cameras, 32, 32, torch.ones(2, 3))
    return out


def densify_step(model, config, densifier, optimizers, step):
    out = render_and_backward(model, config)
    densifier.pre_backward(step, out.info)
    (out.rgb.square().mean() + out.alpha.mean()).backward()
    for optimizer in optimizers.values():
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return densifier.post_backward(step, out.info)


# ----------------------------------------------------------------------------- opacity reset


def reset_setup(reset_every):
    config, model = tiny("densify.default.refine_start_iter=1000",  # no growth or pruning
                         "densify.default.refine_stop_iter=50",
                         f"densify.default.reset_every={reset_every}",
                         "densify.default.prune_opa=0.05", "init.initial_opacity=0.6")
    optimizers = model.make_optimizers()
    densifier = model.make_densifier(config.densify, optimizers)
    return config, model, optimizers, densifier


def test_opacity_reset_happens_at_reset_every_and_only_then():
    config, model, optimizers, densifier = reset_setup(reset_every=3)
    ceiling = torch.logit(torch.tensor(0.1))  # 2 x prune_opa, gsplat's reset value
    for step in (1, 2):
        densify_step(model, config, densifier, optimizers, step)
        assert model.splats["opacities"].max() > ceiling + 1  # nothing reset yet
    densify_step(model, config, densifier, optimizers, 3)
    opacities = model.splats["opacities"]
    assert opacities.max() <= ceiling + 1e-6
    # gsplat's reset_opa zeroes the opacities' Adam moments and keeps the optimizer on the
    # same tensor; the strategy's state keeps one entry per Gaussian.
    adam = optimizers["opacities"].state[optimizers["opacities"].param_groups[0]["params"][0]]
    assert optimizers["opacities"].param_groups[0]["params"][0] is opacities
    assert torch.count_nonzero(adam["exp_avg"]) == 0 and torch.count_nonzero(adam["exp_avg_sq"]) == 0
    assert densifier.state["grad2d"].shape == densifier.state["count"].shape == opacities.shape
    densify_step(model, config, densifier, optimizers, 4)  # training goes on from there
    assert torch.isfinite(model.splats["opacities"]).all()


def test_no_reset_past_refine_stop_iter_nor_with_the_presets_reset_every():
    config, model, optimizers, densifier = reset_setup(reset_every=50)
    densify_step(model, config, densifier, optimizers, 50)  # == refine_stop_iter: gsplat stops
    assert torch.sigmoid(model.splats["opacities"]).max() > 0.5
    assert load_config("default").densify.default.reset_every > load_config("default").steps


@pytest.mark.skipif(gsplat.__version__ != "1.5.3", reason="documents gsplat 1.5.3's bug")
def test_gsplat_1_5_3_alone_never_resets():
    """Why Densifier makes the reset itself: gsplat's own step_post_backward at a reset step."""
    config, model, optimizers, densifier = reset_setup(reset_every=3)
    out = render_and_backward(model, config)
    densifier.pre_backward(3, out.info)
    out.rgb.square().mean().backward()
    before = model.splats["opacities"].detach().clone()
    densifier.strategy.step_post_backward(model.splats, optimizers, densifier.state, 3, out.info)
    assert torch.equal(model.splats["opacities"], before)


# ----------------------------------------------------------------------------- grad2d statistics


def test_grad2d_statistics_count_what_grow_grad2d_would_grow():
    # mean grad2d per Gaussian: [unseen 0, 5e-5, 3e-4, 2e-2, 0.5]
    state = {"grad2d": torch.tensor([0.0, 1e-4, 3e-4, 6e-2, 0.5]),
             "count": torch.tensor([0.0, 2.0, 1.0, 3.0, 1.0])}
    stats = grad2d_statistics(state, threshold=2e-4, step=100)
    assert float(stats["grad2d_grown"]) == pytest.approx(0.6)  # 3e-4, 2e-2, 0.5 of 5
    assert float(stats["grad2d_above_0.0002"]) == pytest.approx(0.6)
    assert float(stats["grad2d_above_0.01"]) == pytest.approx(0.4)
    assert float(stats["grad2d_above_0.3"]) == pytest.approx(0.2)
    assert float(stats["grad2d_above_2"]) == 0
    assert float(stats["grad2d_seen"]) == pytest.approx(0.8) and float(stats["grad2d_step"]) == 100
    # the median of the four seen, interpolated: (3e-4 + 2e-2) / 2
    assert float(stats["grad2d_q50"]) == pytest.approx(0.01015)
    assert {f"grad2d_above_{t:g}" for t in GRAD2D_LADDER} <= set(stats)


def test_densifier_logs_grad2d_at_refine_steps_only_when_asked():
    for log in (False, True):
        config, model = tiny("densify.default.refine_start_iter=1",
                             "densify.default.refine_every=2", f"densify.log_grad2d={log}")
        optimizers = model.make_optimizers()
        densifier = model.make_densifier(config.densify, optimizers)
        assert densify_step(model, config, densifier, optimizers, 1) == {}
        stats = densify_step(model, config, densifier, optimizers, 2)  # a refine step
        if not log:
            assert stats == {}
            continue
        assert float(stats["grad2d_step"]) == 2 and 0 < float(stats["grad2d_seen"]) <= 1
        assert float(stats["grad2d_q50"]) <= float(stats["grad2d_q90"]) <= float(stats["grad2d_q99"])
        assert densify_step(model, config, densifier, optimizers, 3) is stats  # kept until next


# ----------------------------------------------------------------------------- geometry terms


def test_regularization_is_empty_when_off_and_before_regularize_from():
    _, model = tiny()
    assert model.regularization(0, 100) == {}
    _, model = tiny("gaussians.opacity_binarize_weight=1", "gaussians.regularize_from=0.5")
    assert model.regularization(49, 100) == {}
    assert set(model.regularization(50, 100)) == {"opacity_binarize"}


def test_opacity_binarization_pushes_each_opacity_towards_0_or_1():
    _, model = tiny("gaussians.opacity_binarize_weight=1")
    start = torch.tensor([-3.0, -0.4, 0.4, 3.0])  # alpha 0.05, 0.40, 0.60, 0.95
    with torch.no_grad():
        model.splats["opacities"].copy_(start.repeat(model.num_primitives // 4))
    optimizer = torch.optim.Adam([model.splats["opacities"]], lr=0.1)
    term = model.regularization(0, 1)["opacity_binarize"]
    assert term.item() == pytest.approx(torch.minimum(torch.sigmoid(start), 1 - torch.sigmoid(start)).mean().item())
    for _ in range(10):
        optimizer.zero_grad()
        model.regularization(0, 1)["opacity_binarize"].backward()
        optimizer.step()
    moved = model.splats["opacities"].detach()[:4] - start
    assert (moved[:2] < -0.5).all() and (moved[2:] > 0.5).all()  # away from alpha = 1/2


def test_scale_and_flatten_terms_shrink_the_widest_and_the_thinnest_axis():
    _, model = tiny("gaussians.scale_weight=2", "gaussians.flatten_weight=3")
    with torch.no_grad():
        model.splats["scales"].copy_(torch.log(torch.tensor([0.01, 0.02, 0.04])).expand_as(
            model.splats["scales"]))
    terms = model.regularization(0, 1)
    assert terms["scale"].item() == pytest.approx(2 * 0.04)
    assert terms["flatten"].item() == pytest.approx(3 * 0.01)
    terms["scale"].backward()
    grad = model.splats["scales"].grad
    assert (grad[:, 2] > 0).all() and (grad[:, :2] == 0).all()  # only the widest axis
    model.splats["scales"].grad = None
    model.regularization(0, 1)["flatten"].backward()
    grad = model.splats["scales"].grad
    assert (grad[:, 0] > 0).all() and (grad[:, 1:] == 0).all()  # only the thinnest axis


def colour_model(*overrides):
    _, model = tiny("gaussians.colour_smooth_weight=1", *overrides)
    with torch.no_grad():
        model.splats["sh0"].zero_()  # every Gaussian grey
        model.splats["sh0"][0] = 1.0  # but the first
    return model


def test_colour_term_pulls_a_lone_off_colour_gaussian_back_and_leaves_the_rest_alone():
    model = colour_model("gaussians.colour_smooth_neighbours=4")
    neighbours = model.neighbours(0)  # [N, 4]
    assert neighbours.shape == (model.num_primitives, 4)
    assert not (neighbours == torch.arange(model.num_primitives)[:, None]).any()  # not itself
    term = model.regularization(0, 1)["colour_smooth"]
    # each pair (i, j) with the odd one in it differs by C0 |(1, 1, 1)|: rho of that, over N x 4
    pairs = int((neighbours[0] >= 0).sum() + (neighbours[1:] == 0).sum())
    d = C0 * 3 ** 0.5
    rho = (d ** 2 + CHARBONNIER_EPS ** 2) ** 0.5 - CHARBONNIER_EPS
    assert term.item() == pytest.approx(pairs * rho / neighbours.numel(), rel=1e-5)
    term.backward()
    grad = model.splats["sh0"].grad[:, 0]  # [N, 3]
    assert (grad[0] > 0).all()  # the odd one is pulled down towards the grey...
    touched = torch.zeros(model.num_primitives, dtype=torch.bool)
    touched[0] = True
    touched[neighbours[0]] = True
    touched |= (neighbours == 0).any(dim=1)
    assert (grad[touched & (torch.arange(len(grad)) > 0)] < 0).all()  # ...its neighbours up
    assert (grad[~touched] == 0).all()  # and no Gaussian that does not meet it moves


def test_colour_term_searches_its_neighbours_every_refresh_and_when_n_changes_and_resumes_them():
    model = colour_model()
    first = model.neighbours(1)
    with torch.no_grad():  # the Gaussians move: a new search would find other neighbours
        model.splats["means"].copy_(model.splats["means"].flip(0))
    assert model.neighbours(2) is first  # kept between refreshes
    saved = model.state_dict()
    resumed = colour_model()
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.neighbours(3), first)  # the checkpoint's, not a new search
    refreshed = model.neighbours(NEIGHBOUR_REFRESH)
    assert not torch.equal(refreshed, first)
    model.splats["means"] = torch.nn.Parameter(model.splats["means"].detach()[:-1])
    model.splats["sh0"] = torch.nn.Parameter(model.splats["sh0"].detach()[:-1])
    assert model.neighbours(NEIGHBOUR_REFRESH + 1).shape[0] == model.num_primitives  # N changed


def test_colour_term_is_off_by_default_and_checks_its_settings():
    _, model = tiny()
    assert "colour_smooth" not in model.regularization(0, 1) and model.colour_neighbours is None
    for key, bad in (("colour_smooth_weight", -1), ("colour_smooth_neighbours", 0)):
        with pytest.raises(ConfigError, match=f"gaussians.{key}"):
            load_config("tiny_test", [f"gaussians.{key}={bad}"])


def test_training_step_adds_the_terms_to_the_loss_and_logs_them():
    config = load_config("tiny_test", ["prompt=a red cube", "gaussians.scale_weight=1000"])
    run = build_run(config)
    stats = training_step(run, 0)
    assert stats["reg_scale"].item() > 0
    config = load_config("tiny_test", ["prompt=a red cube"])
    stats_off = training_step(build_run(config), 0)
    assert not any(k.startswith("reg_") for k in stats_off)
    # same seed, same guidance: the loss differs by the term alone
    assert stats["loss"].item() == pytest.approx(stats_off["loss"].item() + stats["reg_scale"].item(),
                                                 rel=1e-5)


def test_nerf_has_no_terms():
    from nfsd_gs.representations.nerf import NerfField

    config = load_config("tiny_test", ["representation=nerf", "nerf.log2_table_size=8",
                                       "nerf.max_resolution=32"])
    assert NerfField.from_config(config, torch.device("cpu")).regularization(10, 10) == {}


# ----------------------------------------------------------------------------- cameras


def test_random_backgrounds_stop_at_random_until_and_leave_the_random_stream_alone():
    config = load_config("default", ["background.random_probability=1.0",
                                     "background.random_until=0.5"]).background
    white = torch.ones(64, 3)
    early = sample_backgrounds(config, 64, torch.Generator().manual_seed(0), progress=0.49)
    assert not torch.isclose(early, white).all(dim=1).any()  # every view random before...
    generator = torch.Generator().manual_seed(0)
    late = sample_backgrounds(config, 64, generator, progress=0.5)
    assert torch.equal(late, white)  # ...the plain colour from random_until on
    after = torch.rand(1, generator=generator)  # the same draws were made either way
    generator = torch.Generator().manual_seed(0)
    sample_backgrounds(config, 64, generator, progress=0.0)
    assert torch.equal(torch.rand(1, generator=generator), after)
    with pytest.raises(ConfigError, match="background.random_until"):
        load_config("default", ["background.random_until=1.5"])



def test_sampled_elevations_respect_the_range_and_reach_overhead():
    config = load_config("default", ["camera.elevation_range=[-10,75]"])
    cameras = OrbitSampler(config.camera).sample(2000, torch.Generator().manual_seed(0))
    elevation = cameras.elevation_deg
    assert elevation.min() >= -10 and elevation.max() <= 75
    assert elevation.max() > 70 and elevation.min() < -5  # the whole range is used
    words = view_prompts("a red cube", cameras, config.camera)
    assert sum(w.endswith("overhead view") for w in words) == int((elevation > 60).sum()) > 0
    default = OrbitSampler(load_config("default").camera).sample(2000, torch.Generator())
    assert default.elevation_deg.max() <= 45  # today's range never asks for "overhead"


# ----------------------------------------------------------------------------- variants


def test_every_lever_variant_is_a_valid_config():
    chosen = select_variants(list(LEVER_VARIANTS), [])
    assert [v.name for v in chosen] == list(LEVER_VARIANTS)
    base = run_config(Settings(), chosen[0], "a red cylinder", 0, Settings().out)
    for variant in chosen[1:]:
        config = run_config(Settings(), variant, "a red cylinder", 0, Settings().out)
        assert config != base, variant.name  # each lever changes something
    assert set(LEVER_VARIANTS) <= set(VARIANTS)


def test_every_sharpening_variant_keeps_the_blur_prompt_and_changes_something():
    chosen = select_variants(list(SHARPENING_VARIANTS), [])
    configs = {v.name: run_config(Settings(), v, "a red cylinder", 0, Settings().out)
               for v in chosen}
    negblur = configs["nb-base"]
    assert negblur.guidance.negative_prompt.startswith("blurry")
    assert configs["gs-base"].guidance.negative_prompt == NFSD_NEGATIVE_PROMPT
    for name in SHARPENING_VARIANTS[2:]:
        assert configs[name].guidance.negative_prompt == negblur.guidance.negative_prompt, name
        assert configs[name] != negblur, name
    combo = configs["nb-combo"]
    assert (combo.init.initial_opacity, combo.densify.default.refine_start_iter,
            combo.gaussians.flatten_weight) == (0.5, 50, 100)


def test_the_bundled_default_is_the_screening_winner_and_gs_base_what_it_was():
    """Issue 21 moved configs/default.yaml to nb-dense-calm, then to its views rendered at
    96 px (calm-res96), then to a colour rate decaying 20x (calm-colour0.001), then to the
    background schedule with the colour term (calm-bguntil0.5-tv30); gs-base keeps the
    settings every earlier lever screening was measured against, calm-bg0.5 the default the
    later levers were measured on, calm-res64 the default before the render size moved,
    calm-colour0.002 the one before the colour rate did."""
    def config_of(name):
        (variant,) = select_variants([name], [])
        return run_config(Settings(), variant, "a red cylinder", 0, Settings().out)
    default = config_of("nfsd@7.5")
    assert config_of("calm-bguntil0.5-tv30") == default
    assert (default.background.random_probability, default.background.random_until,
            default.gaussians.colour_smooth_weight) == (0.5, 0.5, 30)
    assert config_of("nerf").background.random_until == 1.0  # the NeRF's, as measured
    before = config_of("calm-bg0.5")
    assert config_of("calm-res96") == config_of("calm-colour0.001") == before != default
    before.background.random_until, before.gaussians.colour_smooth_weight = 0.5, 30
    assert before == default

    def one_change(reference, name, section, key, value):
        """``name`` is ``reference`` with ``section.key = value``."""
        changed, unchanged = config_of(name), config_of(reference)
        assert getattr(getattr(changed, section), key) == value, name
        setattr(getattr(changed, section), key, getattr(getattr(unchanged, section), key))
        assert changed == unchanged, name

    for share in (0.0, 0.2, 0.8, 1.0):
        one_change("calm-bg0.5", f"calm-bg{share}", "background", "random_probability", share)
    one_change("calm-bg0.0", "calm-bg0.0-colour0.0005", "gaussians", "sh0_lr_final", 0.0005)
    one_change("calm-bg0.5", "calm-bguntil0.5", "background", "random_until", 0.5)
    for weight in (10, 30):
        one_change("calm-bg0.5", f"calm-tv{weight}", "gaussians", "colour_smooth_weight", weight)
    one_change("calm-bg0.5", "calm-colour0.002", "gaussians", "sh0_lr_final", 0.002)
    for weight in (60, 100):  # the two-tone speckle's next levers, on today's default
        one_change("nfsd@7.5", f"sched-tv{weight}", "gaussians", "colour_smooth_weight", weight)
    one_change("nfsd@7.5", "sched-knn16", "gaussians", "colour_smooth_neighbours", 16)
    one_change("nfsd@7.5", "sched-colour0.0005", "gaussians", "sh0_lr_final", 0.0005)
    assert config_of("calm-colour0.002").camera.resolution == 96
    assert config_of("nb-dense-calm") == config_of("calm-res64") != before
    before = config_of("gs-base")
    assert (before.guidance.negative_prompt, before.guidance.t_max_end,
            before.gaussians.sh0_lr_final, before.densify.default.refine_start_iter,
            before.camera.resolution) == (NFSD_NEGATIVE_PROMPT, 0.3, 0.0, 100, 64)
    assert config_of("nfsd-paperneg@7.5").guidance.negative_prompt == NFSD_NEGATIVE_PROMPT


# ----------------------------------------------------------------------------- lever table


def row(variant, prompt, seed, shape_acc, sharpness, error=None):
    if error:
        return {"variant": variant, "prompt": prompt, "seed": seed, "error": error}
    return {"variant": variant, "prompt": prompt, "seed": seed, "shape": prompt.split()[-1],
            "train_s": 10.0,
            "ours": {"shape_acc": shape_acc, "colour_acc": 1.0, "iou": 0.9, "colour_de": 12.0,
                     "speckle": 0.02, "sharpness": sharpness},
            "truth": {"shape_acc": 1.0, "colour_acc": 1.0, "speckle": 0.05, "sharpness": 0.01}}


def test_lever_rows_pair_each_variant_with_the_base_on_shared_runs():
    from nfsd_gs.eval.report import lever_rows, lever_table

    rows = [row("base", "a red cylinder", 0, 0.0, 0.006), row("base", "a blue cube", 0, 1.0, 0.008),
            row("lever", "a red cylinder", 0, 1.0, 0.010),
            row("lever", "a blue cube", 0, None, None, error="TrainingInterrupted: SIGINT"),
            row("lever", "a blue cube", 1, 1.0, 0.012)]  # seed 1: no base run to pair with
    base, lever = lever_rows(rows, ["base", "lever"], base="base")
    assert base["runs"] == 2 and "paired_runs" not in base
    assert base["shape_acc"] == 0.5 and base["focus_shape_acc"] == 0.0 and base["focus_runs"] == 1
    assert base["sharpness_vs_truth"] == pytest.approx(0.7)
    assert lever["runs"] == 2 and lever["errors"] == 1 and lever["paired_runs"] == 1
    assert lever["paired_shape_diff"] == 1.0
    assert lever["paired_sharpness_diff"] == pytest.approx(0.4)  # (0.010 - 0.006) / 0.01
    table = lever_table([base, lever])
    assert "| lever | 2 (+1 errors) | 100% | 100% (1) |" in table and "+100 pts, +0.40 (1 runs)" in table
