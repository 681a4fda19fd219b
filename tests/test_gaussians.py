"""The Gaussian model: schedules, export -> load -> render, densification cap."""

from __future__ import annotations

import math

import pytest
import torch

from nfsd_gs.cameras import OrbitSampler
from nfsd_gs.config import load_config
from nfsd_gs.densify import Densifier
from nfsd_gs.errors import ConfigError
from nfsd_gs.formats.ply import load_ply, save_ply
from nfsd_gs.init import initial_splats
from nfsd_gs.representations import GaussianModel


def tiny_model(sh_degree=1, **overrides):
    config = load_config("tiny_test", [f"gaussians.sh_degree={sh_degree}",
                                       *[f"{k}={v}" for k, v in overrides.items()]])
    splats = initial_splats(config.init, sh_degree)
    splats["shN"] = torch.randn_like(splats["shN"]) * 0.3  # make view dependence visible
    return config, GaussianModel(splats, config.gaussians, config.render, scene_extent=1.0)


def render(model, config):
    cameras = OrbitSampler(config.camera).fixed_views(2)
    return model.render(cameras, 32, 32, torch.ones(2, 3)).rgb


def test_export_load_render_reproduces_the_image(tmp_path):
    config, model = tiny_model(sh_degree=1)
    model.active_sh_degree = 1
    before = render(model, config)
    save_ply(tmp_path / "model.ply", {k: v.detach() for k, v in model.splats.items()})
    loaded = GaussianModel(load_ply(tmp_path / "model.ply"), config.gaussians, config.render)
    loaded.active_sh_degree = 1
    assert torch.equal(render(loaded, config), before)


def test_means_learning_rate_decays_log_linearly_and_sh_degree_grows():
    config, model = tiny_model(sh_degree=2, **{"gaussians.sh_degree_interval": 10})
    optimizers = model.make_optimizers()
    start, end = config.gaussians.means_lr, config.gaussians.means_lr_final
    model.update(0, 100, optimizers)
    assert math.isclose(optimizers["means"].param_groups[0]["lr"], start)
    model.update(50, 100, optimizers)
    assert math.isclose(optimizers["means"].param_groups[0]["lr"], math.sqrt(start * end))
    assert model.active_sh_degree == 2  # capped at the model's degree
    model.update(15, 100, optimizers)
    assert model.active_sh_degree == 1
    assert set(optimizers) == {"means", "scales", "quats", "opacities", "sh0", "shN"}


def test_colour_learning_rate_decays_only_when_asked():
    config, model = tiny_model(**{"gaussians.sh0_lr_final": 1e-3})
    optimizers = model.make_optimizers()
    start = config.gaussians.sh0_lr
    rates = []
    for step in (0, 50, 100):
        model.update(step, 100, optimizers)
        rates.append(optimizers["sh0"].param_groups[0]["lr"])
    assert [math.isclose(r, e) for r, e in zip(rates, (start, math.sqrt(start * 1e-3), 1e-3))] \
        == [True] * 3
    _, constant = tiny_model()
    optimizers = constant.make_optimizers()
    constant.update(100, 100, optimizers)  # the default: sh0_lr all run long
    assert optimizers["sh0"].param_groups[0]["lr"] == config.gaussians.sh0_lr


def test_a_colour_rate_above_the_start_is_refused():
    with pytest.raises(ConfigError, match="gaussians.sh0_lr_final"):
        load_config("tiny_test", ["gaussians.sh0_lr_final=1.0"])


def test_state_dict_round_trip_with_a_different_count():
    config, model = tiny_model()
    _, other = tiny_model(**{"init.num_points": 7})
    other.load_state_dict(model.state_dict())
    assert other.num_primitives == model.num_primitives
    assert torch.equal(render(other, config), render(model, config))


def test_densifier_caps_the_count_by_dropping_the_least_opaque():
    config, model = tiny_model(**{"densify.max_gaussians": 50})
    optimizers = model.make_optimizers()
    with torch.no_grad():
        model.splats["opacities"].copy_(torch.linspace(-5, 5, model.num_primitives))
    densifier = Densifier(config.densify, model.splats, optimizers, scene_scale=1.0)
    count = model.num_primitives
    assert count == 200
    assert densifier.enforce_cap() == count - 50
    assert model.splats["opacities"].min() > 5 - 10 * 50 / 199 - 1e-4  # the top 50 stayed
    assert all(p.shape[0] == 50 for p in model.splats.values())
    assert optimizers["means"].param_groups[0]["params"][0] is model.splats["means"]
