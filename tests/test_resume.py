"""Runs that survive (issue 8): exact resume after SIGINT or SIGKILL (NFSD, and VSD with its
trained LoRA, issue 16), non-finite steps."""

from __future__ import annotations

import json
import re
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nfsd_gs.guidance import ScoreDistillation
from nfsd_gs.train.__main__ import main

STEPS = 12
RUN_ARGS = ["--config", "tiny_test", "--prompt", "a red cube", "--no-progress",
            f"steps={STEPS}", "output.checkpoint_every=4", "output.snapshot_every=100",
            "output.name=run"]
# One thread: float reductions in the same order in every process (bit-exact comparison).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nfsd_gs.train", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def logged_steps(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def reference_run(root: Path, *extra: str) -> Path:
    process = train_process(*RUN_ARGS, *extra, "--output-root", str(root))
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return root / "run"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    return reference_run(tmp_path_factory.mktemp("reference"))


def interrupt_at_random_step(root: Path, sig: int, seed: int,
                             *extra: str) -> subprocess.CompletedProcess:
    stop_after = random.Random(seed).randint(2, STEPS - 2)
    process = train_process(*RUN_ARGS, *extra, "--output-root", str(root))
    deadline = time.monotonic() + 600
    while logged_steps(root / "run") < stop_after and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(sig)
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def resume(run_dir: Path) -> None:
    process = train_process("--resume", str(run_dir), "--no-progress")
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err


def losses(run_dir: Path) -> list:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("sig, seed", [(signal.SIGINT, 1), (signal.SIGTERM, 2), (signal.SIGKILL, 3)])
def test_resume_after_a_stop_equals_the_uninterrupted_run(tmp_path, uninterrupted, sig, seed):
    stopped = interrupt_at_random_step(tmp_path, sig, seed)
    run_dir = tmp_path / "run"
    if sig == signal.SIGKILL:
        assert stopped.returncode == -signal.SIGKILL
    else:  # saved where it stopped, said where, exited non-zero
        assert stopped.returncode == 2, stopped.stderr
        message = stopped.stderr.strip().splitlines()[-1]
        how = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
        assert re.fullmatch(rf"stopped at step \d+ \({how}\): saved \S+ and \S+model\.ply; "
                            rf"resume with python -m nfsd_gs\.train --resume {re.escape(str(run_dir))}",
                            message), message  # issue 27: a deliberate stop is no error
        assert (run_dir / "model.ply").exists()
    assert not list(run_dir.rglob("*.tmp*")), "a partial file was left behind"
    resume(run_dir)
    assert (run_dir / "model.ply").read_bytes() == (uninterrupted / "model.ply").read_bytes()
    assert losses(run_dir) == losses(uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("levers", [(), (  # issue 26's levers: fewer rows, a random camera
    "guidance.vsd.views=1", "guidance.vsd.timesteps=2", "guidance.vsd.camera_dropout=0.5",
    "guidance.vsd.start=0.25")])  # dropout (a draw per step) and a late start
def test_vsd_resume_restores_the_lora_and_its_optimizer(tmp_path, tmp_path_factory, levers):
    """The LoRA U-Net and its AdamW are trained every step: a resume (here from the last
    checkpoint before a SIGKILL) that lost them would give other Gaussians."""
    vsd = ("guidance.method=vsd", *levers)
    reference = reference_run(tmp_path_factory.mktemp("reference_vsd"), *vsd)
    interrupt_at_random_step(tmp_path, signal.SIGKILL, 3, *vsd)
    resume(tmp_path / "run")
    assert (tmp_path / "run" / "model.ply").read_bytes() == (reference / "model.ply").read_bytes()
    assert losses(tmp_path / "run") == losses(reference)


def test_resume_of_a_missing_or_corrupt_run_is_one_line(tmp_path, capsys):
    assert main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "step_000004.pt").write_bytes(b"PK\x03\x04 truncated")
    assert main(["--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checkpoint") and "cannot be read" in err
    assert len(err.splitlines()) == 1


def test_resume_given_a_ply_says_what_to_do(tmp_path, capsys, uninterrupted):
    assert main(["--resume", str(uninterrupted / "model.ply")]) == 2
    assert "init.kind=file init.path=" in capsys.readouterr().err
    broken = tmp_path / "broken.ply"
    broken.write_bytes((uninterrupted / "model.ply").read_bytes()[:300])
    assert main(["--resume", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "broken.ply" in err


def nan_direction_at(bad_steps):
    original = ScoreDistillation.direction

    def direction(self, eps, noise, t):
        grad = original(self, eps, noise, t)
        return grad * float("nan") if self.current_step in bad_steps else grad
    return direction


@pytest.fixture
def count_steps(monkeypatch):
    original = ScoreDistillation.loss

    def loss(self, x0, prompts, step, *args, **kwargs):
        self.current_step = step
        return original(self, x0, prompts, step, *args, **kwargs)
    monkeypatch.setattr(ScoreDistillation, "loss", loss)


def test_a_non_finite_step_is_skipped_and_counted(tmp_path, monkeypatch, count_steps):
    monkeypatch.setattr(ScoreDistillation, "direction", nan_direction_at({2}))
    assert main(["--config", "tiny_test", "--prompt", "a red cube", "--no-progress",
                 "--output-root", str(tmp_path)]) == 0
    records = [json.loads(line) for line in
               (tmp_path / "a_red_cube" / "metrics.jsonl").read_text().splitlines()]
    assert [r["nonfinite_steps"] for r in records] == [0, 0, 1, 1, 1, 1]
    assert records[2]["loss"] is None  # written as JSON null
    from nfsd_gs.formats.ply import load_ply

    splats = load_ply(tmp_path / "a_red_cube" / "model.ply")
    assert all(torch.isfinite(v).all() for v in splats.values())


def test_too_many_non_finite_steps_stop_the_run(tmp_path, monkeypatch, capsys, count_steps):
    monkeypatch.setattr(ScoreDistillation, "direction", nan_direction_at(set(range(4, 100))))
    assert main(["--config", "tiny_test", "--prompt", "a red cube", "--no-progress",
                 "--output-root", str(tmp_path), "steps=20", "max_nonfinite_steps=3",
                 "output.checkpoint_every=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "3 non-finite steps in a row, the last at step 6" in err
    assert "timestep t=" in err and "parameter group 'means'" in err
    checkpoints = sorted(p.name for p in (tmp_path / "a_red_cube" / "checkpoints").iterdir())
    assert checkpoints == ["step_000003.pt", "step_000006.pt"]
    state = torch.load(tmp_path / "a_red_cube" / "checkpoints" / "step_000006.pt",
                       weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"]["splats"].values())


# --------------------------------------------------------------------------- --resume and other flags


@pytest.fixture
def finished_run(tmp_path) -> Path:
    assert main(["--config", "tiny_test", "--prompt", "a red cube", "--no-progress",
                 "--output-root", str(tmp_path), "steps=2", "output.checkpoint_every=1",
                 "output.name=run"]) == 0
    return tmp_path / "run"


@pytest.mark.parametrize("extra, named", [
    (["--prompt", "a blue cube"], "--prompt"), (["--config", "default"], "--config"),
    (["--output-root", "elsewhere"], "--output-root"),
    (["guidance.cfg_scale=3"], "'guidance.cfg_scale=3'"), (["output.root=x"], "'output.root=x'"),
])
def test_resume_refuses_in_one_line_what_it_would_ignore(finished_run, capsys, extra, named):
    """--resume RUN --prompt X used to train the old prompt without a word."""
    capsys.readouterr()
    assert main(["--resume", str(finished_run), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], err


def test_resume_with_more_steps_trains_on(finished_run, capsys):
    assert main(["--resume", str(finished_run), "steps=4", "--no-progress",
                 "output.snapshot_every=2"]) == 0
    steps = [json.loads(line)["step"]
             for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert (finished_run / "checkpoints" / "step_000004.pt").is_file()
    assert "steps: 4" in (finished_run / "config.yaml").read_text()
    assert (finished_run / "snapshots" / "step_000004.png").is_file()
    capsys.readouterr()
    assert main(["--resume", str(finished_run), "steps=3"]) == 2
    assert "steps=3 is below step 4" in capsys.readouterr().err


def test_a_checkpoint_write_removes_what_a_killed_writer_left(tmp_path):
    """SIGKILL in the middle of a checkpoint leaves its temporary file; the next save clears it."""
    from nfsd_gs.checkpoint import Checkpoint, checkpoint_path, list_checkpoints

    stray = tmp_path / "checkpoints" / ".step_000008.abc123.tmp.pt"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half a checkpoint")
    state = Checkpoint(step=12, config={}, representation="gaussians", model={}, optimizers={},
                       densifier=None, rng={})
    saved = state.save(checkpoint_path(tmp_path, 12), keep=2)
    assert not stray.exists()
    assert list_checkpoints(tmp_path) == [saved]
    assert Checkpoint.load(saved) == state
