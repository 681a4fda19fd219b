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
    five = graphed.predict_noise(z[:5], t[:5], embeddings[:5])
    assert five.shape[0] == 5
    torch.testing.assert_close(five, eager.predict_noise(z[:5], t[:5], embeddings[:5]),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(graphed.predict_noise(z, t, embeddings),
                               eager.predict_noise(z, t, embeddings), rtol=1e-4, atol=1e-4)
    assert len(graphed._unet_call.captured) == 1
