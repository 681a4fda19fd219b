"""The optimized GPU step (fp16 prior, CUDA-graph U-Net) against the plain one (issue 7)."""

from __future__ import annotations

import pytest
import torch

from nfsd_gs.config import PriorConfig, load_config
from nfsd_gs.guidance import DiffusionPrior
from nfsd_gs.train.run import build_run
from nfsd_gs.train.step import training_step

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def test_graphed_unet_replays_the_eager_call_exactly():
    eager = DiffusionPrior.load(PriorConfig(model="random:tiny-latent", cuda_graph=False), CUDA)
    graphed = DiffusionPrior.load(PriorConfig(model="random:tiny-latent", cuda_graph=True), CUDA)
    for seed in range(3):  # the first call captures, the next ones replay
        generator = torch.Generator(device="cuda").manual_seed(seed)
        z = torch.randn(6, 4, 32, 32, device=CUDA, generator=generator)
        t = torch.randint(20, 980, (6,), device=CUDA, generator=generator)
        embeddings = eager.embed(["a cone", "", "ugly"] * 2)
        torch.testing.assert_close(graphed.predict_noise(z, t, embeddings),
                                   eager.predict_noise(z, t, embeddings), rtol=0, atol=0)


def test_compiled_graphed_unet_gives_the_plain_predictions(tmp_path):
    """``prior.compile_unet`` (issue 25's lever): the compiled U-Net replayed in its CUDA
    graph, at NFSD's row counts 2V + k, against the eager fp16 call: equal up to the
    rounding of other kernels."""
    plain = DiffusionPrior.load(PriorConfig(model="random:tiny-latent", dtype="float16",
                                            cuda_graph=False), CUDA)
    fast = DiffusionPrior.load(PriorConfig(model="random:tiny-latent", dtype="float16",
                                           compile_unet=True,
                                           compile_cache=str(tmp_path / "cache")), CUDA)
    embeddings = plain.embed(["a cone"])
    for rows in (8, 9, 10, 12, 9):  # V = 4: k = 0, 1, 2, 4, then a replay
        generator = torch.Generator(device="cuda").manual_seed(rows)
        z = torch.randn(rows, 4, 32, 32, device=CUDA, generator=generator)
        t = torch.randint(20, 980, (rows,), device=CUDA, generator=generator)
        e = embeddings.expand(rows, -1, -1)
        a, b = plain.predict_noise(z, t, e).flatten(), fast.predict_noise(z, t, e).flatten()
        assert torch.isfinite(b).all()
        assert float((a - b).norm() / a.norm()) < 1e-2  # fp16 operands
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.9999


def step_gradients(overrides):
    """The gradients of the real ``training_step`` (captured just before the optimizers step)."""
    config = load_config("tiny_test", ["prompt=a red cube", "device=cuda",
                                       "prior.model=random:tiny-latent", "camera.resolution=64",
                                       *overrides])
    run = build_run(config)
    grads = {}

    def capture(optimizer, args, kwargs):  # noqa: ARG001 - torch's pre-hook signature
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    grads[group["name"]] = param.grad.detach().flatten().clone()

    for optimizer in run.optimizers.values():
        optimizer.register_step_pre_hook(capture)
    torch.manual_seed(0)  # the same noise and timesteps for both runs
    stats = training_step(run, 0)
    assert "nonfinite" not in stats
    return grads


def test_optimized_step_gradients_match_the_plain_step():
    plain = step_gradients(["prior.dtype=float32", "prior.cuda_graph=false"])
    fast = step_gradients(["prior.dtype=float16", "prior.cuda_graph=true"])
    for key in ("means", "scales", "opacities", "sh0"):
        cosine = torch.nn.functional.cosine_similarity(plain[key], fast[key], dim=0)
        assert cosine > 0.99, (key, float(cosine))  # fp16 rounding only
    # isotropic initial Gaussians: rotating them changes nothing, both gradients are ~0
    assert fast["quats"].abs().max() <= 1e-3 * max(plain["means"].abs().max(), 1e-12)


def test_graphed_unet_pads_to_a_bucket_and_drops_the_padding():
    """5 rows run in the graph of 6 (guidance/graph.py): the padding row's output is dropped,
    the 5 outputs are the eager call's up to the noise of another batch size, and 6 rows
    replay the same graph."""
    eager = DiffusionPrior.load(PriorConfig(model="random:tiny-latent", cuda_graph=False,
                                            dtype="float32"), CUDA)
    graphed = DiffusionPrior.load(PriorConfig(model="random:tiny-latent", cuda_graph=True,
                                              dtype="float32"), CUDA)
    generator = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(6, 4, 32, 32, device=CUDA, generator=generator)
    t = torch.randint(20, 980, (6,), device=CUDA, generator=generator)
    embeddings = eager.embed(["a cone", "", "ugly"] * 2)
    graphed.use_row_buckets()  # what a pool of several assets turns on
    five = graphed.predict_noise(z[:5], t[:5], embeddings[:5])
    assert five.shape[0] == 5
    torch.testing.assert_close(five, eager.predict_noise(z[:5], t[:5], embeddings[:5]),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(graphed.predict_noise(z, t, embeddings),
                               eager.predict_noise(z, t, embeddings), rtol=1e-4, atol=1e-4)
    assert len(graphed._unet_call.captured) == 1


def test_graphs_of_several_batch_sizes_share_a_pool_and_replay_exactly():
    """NFSD's U-Net call has 2V + k rows (issue 25): one graph per row count, one memory
    pool, replayed in any order, each equal to the eager call."""
    eager = DiffusionPrior.load(PriorConfig(model="random:tiny-latent", cuda_graph=False), CUDA)
    graphed = DiffusionPrior.load(PriorConfig(model="random:tiny-latent", cuda_graph=True), CUDA)
    generator = torch.Generator(device="cuda").manual_seed(0)
    for rows in (12, 8, 10, 12, 8, 9):
        z = torch.randn(rows, 4, 32, 32, device=CUDA, generator=generator)
        t = torch.randint(20, 980, (rows,), device=CUDA, generator=generator)
        embeddings = eager.embed(["a cone"] * rows)
        torch.testing.assert_close(graphed.predict_noise(z, t, embeddings),
                                   eager.predict_noise(z, t, embeddings), rtol=0, atol=0)
    assert len(graphed._unet_call.captured) == 4


def encoder_gradients(prior, config):
    """x0 and d(sum w x0)/d rgb of one fp16 encode under ``config`` (a PriorConfig)."""
    prior.configure(config)
    generator = torch.Generator(device="cuda").manual_seed(0)
    rgb = torch.rand(4, 64, 64, 3, device=CUDA, generator=generator, requires_grad=True)
    x0 = prior.encode(rgb)
    weights = torch.randn(x0.shape, device=CUDA, generator=generator)
    (x0 * weights).sum().backward()
    return x0.detach().flatten(), rgb.grad.flatten()


@pytest.mark.parametrize("changed", [dict(encoder_layout="contiguous"),
                                     dict(encoder_layout="channels_last"),
                                     dict(encoder_layout="contiguous", cudnn_benchmark=True),
                                     dict(encoder_layout="contiguous", compile_encoder=True)])
def test_changed_encoder_paths_give_the_plain_gradients(changed, tmp_path):
    """Each kernel path of issue 25's encoder levers against the plain one (strided input,
    eager, no cuDNN search): the same latents and input gradients up to fp16 rounding."""
    prior = DiffusionPrior.load(PriorConfig(model="random:tiny-latent"), CUDA)
    plain = encoder_gradients(prior, PriorConfig(encoder_layout="strided"))
    fast = encoder_gradients(prior, PriorConfig(compile_cache=str(tmp_path / "cache"), **changed))
    prior.configure(PriorConfig())
    for a, b in zip(plain, fast):
        assert torch.isfinite(b).all()
        assert float((a - b).norm() / a.norm()) < 1e-2  # fp16 operands
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.9999


def test_negative_rows_where_used_give_the_full_batch_step_gradients():
    """Below t = 200 the step asks for 2V rows instead of 3V; the gradients agree with the
    full batch's up to the fp16 U-Net's batch-dependent rounding."""
    fixed = ["guidance.t_min=0.1", "guidance.t_max=0.15", "guidance.t_max_end=0.15",
             "guidance.t_anneal=none", "prior.dtype=float16", "prior.cuda_graph=true"]
    full = step_gradients(fixed + ["guidance.negative_where_used=false"])
    fewer = step_gradients(fixed + ["guidance.negative_where_used=true"])
    for key in ("means", "scales", "opacities", "sh0"):
        cosine = torch.nn.functional.cosine_similarity(full[key], fewer[key], dim=0)
        assert cosine > 0.999, (key, float(cosine))
