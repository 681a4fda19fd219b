"""VSD (ProlificDreamer, issue 16): the gradient against the formula, the LoRA that trains
while the frozen prior stays frozen, the preset, checkpoints and bad input."""

from __future__ import annotations

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
from nfsd_gs.guidance.vsd import ADAPTER_NAME, Vsd, camera_features
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


def scripted_vsd(cfg_scale, eps_phi):
    torch.manual_seed(0)
    shape = (3, 4, 4)
    eps = {PROMPT: torch.randn(shape), "": torch.randn(shape), NEGATIVE: torch.randn(shape)}
    prior = ScriptedPrior(eps)
    config = GuidanceConfig(method="vsd", cfg_scale=cfg_scale, negative_prompt=NEGATIVE,
                            t_min=0.5, t_max=0.5, t_anneal="none")
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
    """fp16 prior replayed as a CUDA graph, fp32 LoRA trained eagerly on the same U-Net."""
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
