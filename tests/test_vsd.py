"""VSD (ProlificDreamer, issue 16): the gradient against the formula, the LoRA that trains
while the frozen prior stays frozen, the preset, checkpoints and bad input."""

from __future__ import annotations

import contextlib
import json
import sys

import pytest
import torch
from test_guidance import NEGATIVE, ScriptedPrior

from nfsd_gs.cameras import orbit_cameras
from nfsd_gs.config import GuidanceConfig, PriorConfig, VsdConfig
from nfsd_gs.errors import ConfigError
from nfsd_gs.guidance import DiffusionPrior, ScoreDistillation
from nfsd_gs.guidance.architectures import random_components
from nfsd_gs.guidance.vsd import ADAPTER_NAME, Vsd, camera_features, lora_rows
from nfsd_gs.train.__main__ import main

CPU = torch.device("cpu")
PROMPT = "a cone"


def cameras_for(views: int):
    return orbit_cameras(torch.linspace(-90, 90, views), torch.full((views,), 15.0),
                         torch.full((views,), 2.5), torch.full((views,), 50.0))


class ScriptedLora:
    """A stand-in eps_phi: a known prediction per view; records what it was given."""

    def __init__(self, eps_phi):
        self.eps_phi = eps_phi  # [B, C, h, w]
        self.predicted, self.trained = [], []

    def step(self, z_t, t, x0, embeddings, cameras):
        self.predicted.append((z_t, t, embeddings, cameras))
        self.trained.append(x0)
        return self.eps_phi, torch.zeros(())


def scripted_vsd(cfg_scale, eps_phi, **vsd):
    torch.manual_seed(0)
    shape = (3, 4, 4)
    eps = {PROMPT: torch.randn(shape), "": torch.randn(shape), NEGATIVE: torch.randn(shape)}
    prior = ScriptedPrior(eps)
    config = GuidanceConfig(method="vsd", cfg_scale=cfg_scale, negative_prompt=NEGATIVE,
                            t_min=0.5, t_max=0.5, t_anneal="none", vsd=VsdConfig(**vsd))
    lora = ScriptedLora(eps_phi)
    guidance = ScoreDistillation(prior, config, total_steps=10, method=Vsd(prior, config, lora))
    return prior, guidance, eps, lora


@pytest.mark.parametrize("cfg_scale", [1.0, 7.5])
def test_vsd_gradient_is_cfg_of_the_frozen_prior_minus_the_lora(cfg_scale):
    eps_phi = torch.randn(2, 3, 4, 4)
    prior, guidance, eps, lora = scripted_vsd(cfg_scale, eps_phi)
    cameras = cameras_for(2)
    x0 = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss, stats = guidance.loss(x0, [PROMPT, PROMPT], step=0, cameras=cameras)
    loss.backward()

    w = 1 - prior.alphas_cumprod[500]
    eps_cfg = eps[""] + cfg_scale * (eps[PROMPT] - eps[""])  # the frozen side, CFG'd
    expected = w * (eps_cfg - eps_phi) / 2  # minus the LoRA side; / B
    torch.testing.assert_close(x0.grad, expected)
    assert prior.unet_calls == [4]  # ONE frozen call: 2 views x [cond, uncond], no negative
    (z_t, t, embeddings, seen_cameras), = lora.predicted  # eps_phi at the same z_t and t,
    torch.testing.assert_close(z_t, x0.detach() + prior.noise)  # with the prompt and cameras
    assert t.tolist() == [500, 500] and seen_cameras is cameras
    assert embeddings[:, 0, 0].tolist() == [prior.prompts.index(PROMPT)] * 2
    (trained,), = [lora.trained]  # one LoRA step, on the renders, detached
    assert not trained.requires_grad and torch.equal(trained, x0.detach())
    assert "lora_loss" in stats


def test_vsd_with_the_negative_prompt_guides_against_it():
    """guidance.vsd.negative: eps_neg + s (eps_cond - eps_neg) - eps_phi, from the same
    number of U-Net rows (the negative branch in place of the empty one)."""
    eps_phi = torch.randn(2, 3, 4, 4)
    prior, guidance, eps, _ = scripted_vsd(7.5, eps_phi, negative=True)
    assert guidance.branches == ["cond", "negative"]
    x0 = torch.randn(2, 3, 4, 4, requires_grad=True)
    guidance.loss(x0, [PROMPT, PROMPT], step=0, cameras=cameras_for(2))[0].backward()
    w = 1 - prior.alphas_cumprod[500]
    expected = w * (eps[NEGATIVE] + 7.5 * (eps[PROMPT] - eps[NEGATIVE]) - eps_phi) / 2
    torch.testing.assert_close(x0.grad, expected)
    assert prior.unet_calls == [4]


def test_vsd_with_the_domain_term_adds_nfsds_negative_term_where_t_is_high():
    """guidance.vsd.domain_scale: eps_cfg - eps_phi + lambda (eps_uncond - eps_neg) on the
    views with t >= 200 (NFSD eq. 8), whose negative rows alone join the U-Net call."""
    eps_phi = torch.randn(2, 3, 4, 4)
    prior, guidance, eps, _ = scripted_vsd(7.5, eps_phi, domain_scale=0.5)
    assert guidance.branches == ["cond", "uncond", "negative"]
    x0 = torch.randn(2, 3, 4, 4, requires_grad=True)
    guidance.loss(x0, [PROMPT, PROMPT], step=0, cameras=cameras_for(2))[0].backward()
    w = 1 - prior.alphas_cumprod[500]
    eps_cfg = eps[""] + 7.5 * (eps[PROMPT] - eps[""])
    expected = w * (eps_cfg - eps_phi + 0.5 * (eps[""] - eps[NEGATIVE])) / 2
    torch.testing.assert_close(x0.grad, expected)
    assert prior.unet_calls == [6]  # t = 500 >= 200: the negative rows for both views
    method = guidance.method
    assert method.views_needed("negative", torch.tensor([100, 500])).tolist() == [False, True]
    assert method.views_needed("uncond", torch.tensor([100, 500])) is None


def test_vsd_domain_term_is_zero_below_the_threshold():
    from nfsd_gs.guidance.nfsd import negative_term
    eps_uncond, eps_negative = torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    eps_negative[0] = float("nan")  # the row below 200 was left out of the U-Net call: unread
    term = negative_term(eps_uncond, eps_negative, torch.tensor([100, 500]), 200, 2.0)
    assert torch.equal(term[0], torch.zeros(3, 4, 4))
    torch.testing.assert_close(term[1], 2.0 * eps_uncond[1])


def test_vsd_domain_term_and_the_negative_branch_do_not_mix():
    with pytest.raises(ConfigError, match="guidance.vsd.domain_scale"):
        VsdConfig(negative=True, domain_scale=1.0).validate()
    with pytest.raises(ConfigError, match="guidance.vsd.domain_scale.*-1"):
        VsdConfig(domain_scale=-1.0).validate()


def test_vsd_gradient_has_no_random_noise_term():
    """The LoRA's prediction stands where SDS subtracts the noise: another draw, same gradient."""
    grads = []
    for seed in (1, 2):
        eps_phi = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
        _, guidance, _, _ = scripted_vsd(7.5, eps_phi)
        torch.manual_seed(seed)
        x0 = torch.zeros(1, 3, 4, 4, requires_grad=True)
        guidance.loss(x0, [PROMPT], step=0, cameras=cameras_for(1))[0].backward()
        grads.append(x0.grad)
    torch.testing.assert_close(grads[0], grads[1])


# --------------------------------------------------------------------------- the real LoRA


def tiny_prior(model="random:tiny"):
    return DiffusionPrior.load(PriorConfig(model=model), CPU)


def vsd_guidance(prior, **vsd):
    config = GuidanceConfig(method="vsd", t_anneal="none", vsd=VsdConfig(**vsd))
    guidance = ScoreDistillation(prior, config, total_steps=10)
    guidance.prepare(PROMPT)
    return guidance


def frozen_eps(prior, x, t):
    return prior.predict_noise(x, t, prior.embed([PROMPT] * len(x)))


def test_lora_starts_as_the_prior_and_trains_while_the_prior_stays_frozen():
    torch.manual_seed(0)
    prior = tiny_prior()
    base = [(p, p.detach().clone()) for p in prior.unet.parameters()]
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([300, 700])
    before = frozen_eps(prior, x, t)
    guidance = vsd_guidance(prior)
    lora, cameras = guidance.method.lora, cameras_for(2)
    embeddings = prior.embed([PROMPT] * 2)
    # Alg. 1 initializes eps_phi as the pretrained model: LoRA B = 0, camera MLP output = 0.
    assert torch.equal(lora.predict_noise(x, t, embeddings, cameras), before)
    lora_names = [n for n, _ in prior.unet.named_parameters() if f".{ADAPTER_NAME}." in n]
    assert lora_names and all(any(k in n for k in ("to_q", "to_k", "to_v", "to_out"))
                              for n in lora_names)
    initial = [p.detach().clone() for p in lora.parameters]

    x0 = torch.rand(2, 3, 32, 32, requires_grad=True)
    for step in range(2):
        loss, stats = guidance.loss(x0, [PROMPT] * 2, step, cameras=cameras)
        loss.backward()
        assert torch.isfinite(stats["lora_loss"])

    changed = [not torch.equal(a, p) for a, p in zip(initial, lora.parameters)]
    named = dict(zip(lora_names, changed))
    assert all(v for n, v in named.items() if "lora_B" in n)  # every adapter moved
    assert not torch.equal(lora.camera_embedding.linear_2.weight, torch.zeros_like(
        lora.camera_embedding.linear_2.weight))  # and the camera MLP
    # The frozen prior: its own weights, shared with the LoRA U-Net and unchanged, ...
    shared = {id(p) for p in prior.unet.parameters()}
    assert all(id(p) in shared and not p.requires_grad and torch.equal(p, v) for p, v in base)
    assert torch.equal(frozen_eps(prior, x, t), before)  # ... and the same predictions
    assert not torch.equal(lora.predict_noise(x, t, embeddings, cameras), before)
    assert prior.unet.class_embedding is None  # the camera MLP is attached only while active


def test_lora_is_conditioned_on_the_camera():
    prior = tiny_prior()
    guidance = vsd_guidance(prior)
    torch.nn.init.normal_(guidance.method.lora.camera_embedding.linear_2.weight)
    x, t = torch.randn(1, 3, 32, 32).repeat(2, 1, 1, 1), torch.tensor([500, 500])
    eps = guidance.method.lora.predict_noise(x, t, prior.embed([PROMPT] * 2), cameras_for(2))
    assert not torch.equal(eps[0], eps[1])  # same z_t, t and prompt; other camera
    cameras = cameras_for(2)
    torch.testing.assert_close(camera_features(cameras).view(2, 4, 4) @ cameras.world_to_camera,
                               torch.eye(4).expand(2, 4, 4))


@pytest.mark.parametrize("model", ["random:tiny", "random:tiny-v"])
def test_diffusion_target_is_the_noise_in_the_models_parametrization(model):
    prior = tiny_prior(model)
    x0, noise, t = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), torch.tensor([100, 800])
    z_t = prior.add_noise(x0, noise, t)
    target = prior.diffusion_target(x0, noise, t)
    assert torch.equal(target, noise) == (model == "random:tiny")
    torch.testing.assert_close(prior.to_epsilon(target, z_t, t), noise)


def test_state_dict_round_trip_and_a_shared_prior_gets_a_fresh_lora():
    torch.manual_seed(0)
    prior = tiny_prior()
    guidance = vsd_guidance(prior)
    x0 = torch.rand(2, 3, 32, 32, requires_grad=True)
    for step in range(2):
        guidance.loss(x0, [PROMPT] * 2, step, cameras=cameras_for(2))[0].backward()
    state = guidance.state_dict()
    x, t, cameras = torch.randn(2, 3, 32, 32), torch.tensor([200, 600]), cameras_for(2)
    trained = guidance.method.lora.predict_noise(x, t, prior.embed([PROMPT] * 2), cameras)

    other_prior = tiny_prior()
    other = vsd_guidance(other_prior)
    other.load_state_dict(state)
    assert torch.equal(other.method.lora.predict_noise(x, t, other_prior.embed([PROMPT] * 2),
                                                       cameras),
                       trained)
    assert (other.method.lora.optimizer.state_dict()["state"].keys()
            == state["optimizer"]["state"].keys())

    again = vsd_guidance(prior)  # a second run on the same loaded prior (eval, batch)
    assert torch.equal(again.method.lora.predict_noise(x, t, prior.embed([PROMPT] * 2), cameras),
                       frozen_eps(prior, x, t))
    assert ScoreDistillation(prior, GuidanceConfig(method="nfsd"), 10).state_dict() == {}


# --------------------------------------------------------------------------- levers (issue 26)


def test_lora_rows_are_the_first_views_each_timesteps_times():
    x0, embeddings, labels = torch.randn(3, 2, 4, 4), torch.randn(3, 5, 6), torch.randn(3, 16)
    for views, timesteps, expected in ((0, 1, [0, 1, 2]), (1, 1, [0]), (5, 1, [0, 1, 2]),
                                       (2, 3, [0, 1, 0, 1, 0, 1])):
        rows = lora_rows(x0, embeddings, labels, views, timesteps)
        for got, full in zip(rows, (x0, embeddings, labels)):
            assert torch.equal(got, full[expected])
    x_last = torch.randn(2, 4, 4, 3).permute(0, 3, 1, 2)  # channels-last, as the encoder gives
    assert lora_rows(x_last, embeddings[:2], labels[:2], 0, 1)[0].stride() == x_last.stride()


def recorded_rows(lora):
    """Rows of every call of the camera MLP (eps_phi's forward, then the LoRA step's)."""
    rows = []
    lora.camera_embedding.register_forward_hook(lambda m, args, out: rows.append(len(args[0])))
    return rows


@pytest.mark.parametrize("levers, rows", [
    ({"views": 1}, [3, 1]), ({"views": 2, "timesteps": 2}, [3, 4]), ({}, [3, 3]),
])
def test_the_lora_trains_on_its_rows_and_the_prior_stays_frozen(levers, rows):
    torch.manual_seed(0)
    prior = tiny_prior()
    base = [(p, p.detach().clone()) for p in prior.unet.parameters()]
    guidance = vsd_guidance(prior, **levers)
    lora = guidance.method.lora
    seen = recorded_rows(lora)
    initial = [p.detach().clone() for p in lora.parameters]
    x0 = torch.rand(3, 3, 32, 32, requires_grad=True)
    guidance.loss(x0, [PROMPT] * 3, 0, cameras=cameras_for(3))[0].backward()
    assert seen == rows
    assert sum(not torch.equal(a, p) for a, p in zip(initial, lora.parameters)) > len(initial) // 2
    assert all(torch.equal(p, b) for p, b in base)


def test_camera_dropout_one_trains_the_lora_on_a_zero_camera():
    torch.manual_seed(0)
    guidance = vsd_guidance(tiny_prior(), camera_dropout=1.0)
    lora = guidance.method.lora
    first = lora.camera_embedding.linear_1.weight.detach().clone()
    x0 = torch.rand(2, 3, 32, 32, requires_grad=True)
    for step in range(2):
        guidance.loss(x0, [PROMPT] * 2, step, cameras=cameras_for(2))[0].backward()
    # a zero input: the first layer's weights get no gradient (AdamW's decay moves them a little)
    assert torch.allclose(lora.camera_embedding.linear_1.weight, first, rtol=1e-4, atol=0)
    assert lora.camera_embedding.linear_1.weight.grad.abs().max() == 0
    assert lora.camera_embedding.linear_2.weight.abs().max() > 0  # the rest learns


def test_before_its_start_the_lora_is_the_prior_and_does_not_train():
    """guidance.vsd.start: until then eps_phi is the untrained LoRA, the prior's eps(z_t; y)."""
    torch.manual_seed(0)
    prior = tiny_prior()
    config = GuidanceConfig(method="vsd", t_anneal="none", t_min=0.5, t_max=0.5,
                            vsd=VsdConfig(start=0.5))
    guidance = ScoreDistillation(prior, config, total_steps=4)
    guidance.prepare(PROMPT)
    lora = guidance.method.lora
    initial = [p.detach().clone() for p in lora.parameters]
    for step in range(4):
        x0 = torch.rand(2, 3, 32, 32, requires_grad=True)
        noised = guidance.perturb(x0, step)
        eps = guidance.predict_branches(noised.z_t, noised.t, [PROMPT] * 2)
        loss, stats = guidance.loss_from_predictions(x0, noised, eps, [PROMPT] * 2,
                                                     cameras=cameras_for(2))
        loss.backward()
        moved = any(not torch.equal(a, p) for a, p in zip(initial, lora.parameters))
        assert moved == (step >= 2) and ("lora_loss" in stats) == (step >= 2)
        if step < 2:
            w = 1 - prior.alphas_cumprod[500]
            expected = w * (config.cfg_scale - 1) * (eps["cond"] - eps["uncond"]) / 2
            torch.testing.assert_close(x0.grad, expected)


def test_a_lora_step_with_a_nonfinite_gradient_changes_nothing(monkeypatch):
    torch.manual_seed(0)
    prior = tiny_prior()
    guidance = vsd_guidance(prior)
    lora = guidance.method.lora
    initial = [p.detach().clone() for p in lora.parameters]
    monkeypatch.setattr(prior, "diffusion_target", lambda x0, noise, t: noise * float("nan"))
    x0 = torch.rand(2, 3, 32, 32, requires_grad=True)
    _, stats = guidance.loss(x0, [PROMPT] * 2, 0, cameras=cameras_for(2))
    assert not torch.isfinite(stats["lora_loss"])
    assert all(torch.equal(a, p) for a, p in zip(initial, lora.parameters))
    assert not lora.optimizer.state  # no moments either: the step never happened


def test_autocast_keeps_float32_master_weights_and_trains():
    """A half-precision prior (bfloat16 on the CPU) with guidance.vsd.autocast: the LoRA's
    weights stay float32, move, and eps_phi starts as the prior (to half precision)."""
    torch.manual_seed(0)
    prior = DiffusionPrior.load(PriorConfig(model="random:tiny", dtype="bfloat16"), CPU)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([300, 700])
    before = frozen_eps(prior, x, t)
    guidance = vsd_guidance(prior, autocast=True)
    lora = guidance.method.lora
    assert lora.half and all(p.dtype == torch.float32 for p in lora.parameters)
    embeddings = prior.embed([PROMPT] * 2)
    torch.testing.assert_close(lora.predict_noise(x, t, embeddings, cameras_for(2)), before,
                               atol=0.05, rtol=0.05)
    initial = [p.detach().clone() for p in lora.parameters]
    x0 = torch.rand(2, 3, 32, 32, requires_grad=True)
    for step in range(2):
        loss, stats = guidance.loss(x0, [PROMPT] * 2, step, cameras=cameras_for(2))
        loss.backward()
        assert torch.isfinite(stats["lora_loss"])
    assert sum(not torch.equal(a, p) for a, p in zip(initial, lora.parameters)) > len(initial) // 2
    assert torch.equal(frozen_eps(prior, x, t), before)


class EagerStaticGraph:
    """graph.StaticGraph's contract on the CPU: the warm-ups, then each call copies its
    inputs into the static ones and runs the function on them (what a replay computes)."""

    def __init__(self, function, inputs, *, grad=False, warmup=None, warmup_steps=2,
                 context=None, pool=None):
        self.inputs = [x.clone() for x in inputs]
        self.function, self.grad = function, grad
        self.context = context or contextlib.nullcontext
        with self.context(), torch.set_grad_enabled(grad):
            for _ in range(warmup_steps):
                (warmup or function)(*self.inputs)

    def __call__(self, *inputs):
        for static, value in zip(self.inputs, inputs):
            static.copy_(value)
        with self.context(), torch.set_grad_enabled(self.grad):
            return self.function(*self.inputs).clone()


@pytest.fixture
def cpu_graphs(monkeypatch):
    """CameraLora's graphed path on the CPU (fused, capturable AdamW with found_inf; the
    captured functions run eagerly): its logic is checked here, its capture on the GPU."""
    from nfsd_gs.guidance import graph, vsd

    monkeypatch.setattr(vsd, "graphs_available", lambda device: True)
    monkeypatch.setattr(vsd, "StaticGraph", EagerStaticGraph)
    monkeypatch.setattr(graph, "StaticGraph", EagerStaticGraph)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)


@pytest.mark.parametrize("levers", [{}, {"views": 1, "timesteps": 2, "camera_dropout": 0.5}])
def test_the_graphed_path_computes_what_the_eager_one_does(cpu_graphs, levers):
    """The same eps_phi, LoRA gradients and weights step after step, and a warm-up that
    leaves every weight and moment as it was."""
    loras = []
    for graphed in (False, True):
        torch.manual_seed(0)
        guidance = vsd_guidance(tiny_prior(), cuda_graph=graphed, **levers)
        loras.append((guidance.prior, guidance.method.lora))
    (prior_e, eager), (prior_g, graphed) = loras
    assert graphed.graphed and not eager.graphed
    generator = torch.Generator().manual_seed(1)
    for a, b in zip(eager.parameters, graphed.parameters):  # a LoRA that is not the prior
        a.data.copy_(torch.randn(a.shape, generator=generator) * 0.05)
        b.data.copy_(a.data)
    x0, t = torch.rand(3, 3, 32, 32) * 2 - 1, torch.tensor([100, 500, 900])
    z_t = prior_e.add_noise(x0, torch.randn_like(x0), t)
    for step in range(3):
        out = []
        for prior, lora in ((prior_e, eager), (prior_g, graphed)):
            torch.manual_seed(10 + step)
            eps_phi, mse = lora.step(z_t, t, x0, prior.embed([PROMPT] * 3), cameras_for(3))
            out.append((eps_phi, mse, [p.grad.clone() for p in lora.parameters]))
        (eps_e, mse_e, grads_e), (eps_g, mse_g, grads_g) = out
        torch.testing.assert_close(eps_g, eps_e)
        torch.testing.assert_close(mse_g, mse_e)
        for a, b in zip(grads_g, grads_e):
            torch.testing.assert_close(a, b)
        for a, b in zip(graphed.parameters, eager.parameters):  # fused and foreach AdamW
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(graphed._found_inf) == 0.0 and len(graphed._train_graphs) == 1
    assert all(float(s["step"]) == 3 for s in graphed.optimizer.state.values())  # no warm-up step


def test_the_graphed_path_skips_a_nonfinite_step_and_resumes_either_way(cpu_graphs, monkeypatch):
    torch.manual_seed(0)
    prior = tiny_prior()
    guidance = vsd_guidance(prior, cuda_graph=True)
    lora = guidance.method.lora
    x0 = torch.rand(2, 3, 32, 32, requires_grad=True)
    guidance.loss(x0, [PROMPT] * 2, 0, cameras=cameras_for(2))[0].backward()
    weights = [p.detach().clone() for p in lora.parameters]
    state = guidance.state_dict()
    with monkeypatch.context() as patched:
        patched.setattr(prior, "diffusion_target", lambda x0, noise, t: noise * float("nan"))
        guidance.loss(x0, [PROMPT] * 2, 1, cameras=cameras_for(2))[0].backward()
    assert float(lora._found_inf) == 1.0
    assert all(torch.equal(a, p) for a, p in zip(weights, lora.parameters))
    assert all(float(s["step"]) == 1 for s in lora.optimizer.state.values())
    # the graphed run's checkpoint resumes eagerly (and back) with its own optimizer kind
    eager = vsd_guidance(tiny_prior(), cuda_graph=False)
    eager.load_state_dict(state)
    group = eager.method.lora.optimizer.param_groups[0]
    assert not group["fused"] and not group["capturable"]
    assert all(s["step"].device.type == "cpu" for s in eager.method.lora.optimizer.state.values())
    again = vsd_guidance(tiny_prior(), cuda_graph=True)
    again.load_state_dict(eager.state_dict())
    assert again.method.lora.optimizer.param_groups[0]["fused"]


# --------------------------------------------------------------------------- runs and bad input


def test_two_steps_of_the_preset_save_the_lora_in_the_checkpoint(tmp_path):
    assert main(["--config", "vsd_gs", "--prompt", "a red cube", "--no-progress",
                 "--output-root", str(tmp_path), "prior.model=random:tiny", "steps=2",
                 "camera.resolution=16", "camera.batch_size=2", "init.num_points=50",
                 "device=cpu", "output.turntable=false", "output.log_every=1",
                 "output.name=run"]) == 0
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    records = [json.loads(line) for line in metrics.splitlines()]
    assert len(records) == 2 and all(r["lora_loss"] > 0 for r in records)
    state = torch.load(tmp_path / "run" / "checkpoints" / "step_000002.pt", weights_only=False)
    assert state["config"]["guidance"]["method"] == "vsd"
    assert any("lora_B" in k for k in state["guidance"]["lora"])
    assert state["guidance"]["optimizer"]["state"]  # AdamW moments after two steps


def attention_free_prior():
    from diffusers import UNet2DConditionModel

    components = random_components("tiny")
    components.unet = UNet2DConditionModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64),
        layers_per_block=1, norm_num_groups=32, down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2, mid_block_type=None, cross_attention_dim=32)
    return DiffusionPrior(components, CPU, name="no-attention")


def test_a_prior_that_cannot_take_a_lora_is_one_clear_error(monkeypatch):
    with pytest.raises(ConfigError, match="prior 'no-attention' has no attention projections"):
        ScoreDistillation(attention_free_prior(), GuidanceConfig(method="vsd"), 10)
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ConfigError, match="needs the peft library: pip install peft"):
        ScoreDistillation(tiny_prior(), GuidanceConfig(method="vsd"), 10)


@pytest.mark.parametrize("override, message", [
    ("guidance.vsd.lora_rank=0", "config key 'guidance.vsd.lora_rank': 0 must be >= 1"),
    ("guidance.vsd.lora_rank=four", "guidance.vsd.lora_rank"),
    ("guidance.vsd.lr=-1", "guidance.vsd.lr"),
    ("guidance.vsd.t_max=1.5", "guidance.vsd.t_min"),
    ("guidance.vsd.views=-1", "config key 'guidance.vsd.views': -1 must be >= 0"),
    ("guidance.vsd.timesteps=0", "config key 'guidance.vsd.timesteps': 0 must be >= 1"),
    ("guidance.vsd.camera_dropout=1.5", "guidance.vsd.camera_dropout"),
    ("guidance.vsd.start=1", "config key 'guidance.vsd.start': 1.0 must lie in [0, 1)"),
    ("guidance.method=vds", "guidance.method"),
])
def test_bad_vsd_config_is_one_line(tmp_path, capsys, override, message):
    assert main(["--config", "tiny_test", "--prompt", "a red cube", "--no-progress",
                 "--output-root", str(tmp_path), "guidance.method=vsd", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


@pytest.mark.gpu
def test_vsd_on_cuda_fp16_beside_the_graphed_prior():
    """fp16 prior replayed as a CUDA graph, fp32 LoRA trained (its own graphs) on the same U-Net."""
    cuda = torch.device("cuda")
    prior = DiffusionPrior.load(PriorConfig(model="random:tiny-latent", cuda_graph=True), cuda)
    assert prior.dtype == torch.float16
    x, t = torch.randn(2, 4, 32, 32, device=cuda), torch.tensor([300, 700], device=cuda)
    before = frozen_eps(prior, x, t)  # captures the graph
    guidance = ScoreDistillation(prior, GuidanceConfig(method="vsd"), total_steps=10)
    guidance.prepare(PROMPT)
    lora = guidance.method.lora
    initial = [p.detach().clone() for p in lora.parameters]
    assert all(p.dtype == torch.float32 for p in lora.parameters)
    x0 = torch.randn(2, 4, 32, 32, device=cuda, requires_grad=True)
    for step in range(3):
        loss, stats = guidance.loss(x0, [PROMPT] * 2, step, cameras=cameras_for(2).to(cuda))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(stats["lora_loss"])
    assert sum(not torch.equal(a, p) for a, p in zip(initial, lora.parameters)) > len(initial) // 2
    assert torch.equal(frozen_eps(prior, x, t), before)
    eager = prior.to_epsilon(prior._eager_unet(x.half(), t, prior.embed([PROMPT] * 2)), x, t)
    torch.testing.assert_close(eager, before, atol=1e-3, rtol=1e-3)


def cuda_lora(graphed: bool, **levers):
    """A fresh random:tiny-latent prior on CUDA (fp16, graphed) with a VSD LoRA; the same
    initial weights for the same levers (seeded)."""
    cuda = torch.device("cuda")
    prior = DiffusionPrior.load(PriorConfig(model="random:tiny-latent", cuda_graph=True), cuda)
    torch.manual_seed(0)
    config = GuidanceConfig(method="vsd", vsd=VsdConfig(cuda_graph=graphed, **levers))
    guidance = ScoreDistillation(prior, config, total_steps=10)
    guidance.prepare(PROMPT)
    return prior, guidance.method.lora


def relative_error(a, b) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.gpu
@pytest.mark.parametrize("levers", [{}, {"views": 1, "timesteps": 2}, {"autocast": True}])
def test_the_graphed_lora_gives_the_eager_eps_phi_and_gradients(levers):
    """Issue 26: eps_phi's forward and the LoRA's whole step (forward, backward, AdamW) as
    CUDA graphs compute what the eager path computes, step after step."""
    (prior_e, eager), (prior_g, graphed) = cuda_lora(False, **levers), cuda_lora(True, **levers)
    assert graphed.graphed and not eager.graphed
    generator = torch.Generator().manual_seed(1)
    for a, b in zip(eager.parameters, graphed.parameters):  # a LoRA that is not the prior
        a.data.copy_(torch.randn(a.shape, generator=generator) * 0.05)
        b.data.copy_(a.data)
    cuda = torch.device("cuda")
    views = 3
    x0 = torch.randn(views, 4, 32, 32, device=cuda)
    t = torch.tensor([100, 500, 900], device=cuda)
    z_t = prior_e.add_noise(x0, torch.randn_like(x0), t)
    cameras = cameras_for(views).to(cuda)
    for step in range(3):
        results = []
        for prior, lora in ((prior_e, eager), (prior_g, graphed)):
            torch.manual_seed(10 + step)  # the LoRA's own t and noise: the same draws
            eps_phi, mse = lora.step(z_t, t, x0, prior.embed([PROMPT] * views), cameras)
            results.append((eps_phi, mse, [p.grad.clone() for p in lora.parameters]))
        (eps_e, mse_e, grads_e), (eps_g, mse_g, grads_g) = results
        assert torch.isfinite(eps_g).all() and relative_error(eps_g, eps_e) < 2e-3
        torch.testing.assert_close(mse_g, mse_e, rtol=2e-3, atol=1e-6)
        total_e, total_g = torch.cat([g.flatten() for g in grads_e]), torch.cat(
            [g.flatten() for g in grads_g])
        assert total_e.abs().max() > 0 and relative_error(total_g, total_e) < 1e-2
    # fused vs foreach AdamW, on gradients that differ by float noise: AdamW normalizes each
    # update to about lr, so a weight whose gradient is near zero can move by up to 2 lr a
    # step differently (its sign flips). Bounded by that, and rare (H200, 2026-12-04: 3.3 %
    # and 5.4 % of the ~34k weights past 1e-5, at most 4.5e-4 = 0.45 lr).
    lr = eager.config.lr
    diff = torch.cat([(b - a).detach().abs().flatten() for a, b in zip(eager.parameters,
                                                              graphed.parameters)])
    assert float(diff.max()) <= 2 * lr * 3, float(diff.max())  # three steps
    assert float((diff > 1e-5).float().mean()) < 0.1, int((diff > 1e-5).sum())
    assert len(graphed._train_graphs) == 1 and len(graphed._predict_graphs.captured) == 1


@pytest.mark.gpu
def test_the_graphed_lora_step_skips_a_nonfinite_gradient_on_the_device(monkeypatch):
    prior, lora = cuda_lora(True)
    cuda = torch.device("cuda")
    x0 = torch.randn(2, 4, 32, 32, device=cuda)
    t = torch.tensor([200, 700], device=cuda)
    cameras, embeddings = cameras_for(2).to(cuda), prior.embed([PROMPT] * 2)
    lora.step(prior.add_noise(x0, torch.randn_like(x0), t), t, x0, embeddings, cameras)
    weights = [p.detach().clone() for p in lora.parameters]
    moments = {k: v.clone() for k, v in lora.optimizer.state[lora.parameters[0]].items()}
    monkeypatch.setattr(prior, "diffusion_target", lambda x0, noise, t: noise * float("nan"))
    _, mse = lora.step(prior.add_noise(x0, torch.randn_like(x0), t), t, x0, embeddings, cameras)
    assert not torch.isfinite(mse) and float(lora._found_inf) == 1.0
    assert all(torch.equal(a, p) for a, p in zip(weights, lora.parameters))
    for key, value in lora.optimizer.state[lora.parameters[0]].items():
        assert torch.equal(value, moments[key]), key  # moments and the step count too
