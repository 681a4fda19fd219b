"""Ctrl-C at any moment ends in one line and leaves no run folder that cannot be resumed
(issue 15, item 5).  Subprocesses get SIGINT at moments read from /proc/PID/maps: while
torch is being imported, and while the prior is being loaded (diffusers brings in safetensors)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY = ["--config", "tiny_test", "--prompt", "a red cube", "--no-progress", "output.name=run",
        "output.checkpoint_every=1000", "output.log_every=1"]


def train_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nfsd_gs.train", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(process: subprocess.Popen, ready, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"exited before {what}: {process.communicate()[1]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def has_loaded(process: subprocess.Popen, library: str):
    def ready() -> bool:
        try:
            return library in Path(f"/proc/{process.pid}/maps").read_text()
        except OSError:
            return False
    return ready


def logged_steps(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def finish(process: subprocess.Popen) -> str:
    _, err = process.communicate(timeout=300)
    assert "Traceback" not in err, err
    return err


@pytest.mark.parametrize("library, moment", [("libtorch", "importing torch"),
                                             ("safetensors", "loading the prior")])
def test_ctrl_c_while_starting_is_one_line_and_writes_nothing(tmp_path, library, moment):
    process = train_process("--prompt", "a red cone", "--no-progress",
                            "--output-root", str(tmp_path / "out"))
    wait_until(process, has_loaded(process, library), moment)
    process.send_signal(signal.SIGINT)
    err = finish(process)
    assert process.returncode in (130, -signal.SIGINT), err
    assert err.strip().splitlines() == ["interrupted: before the run started; nothing was written"]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("checkpoint_every", [1000, 2])
def test_a_second_signal_ends_in_one_line(tmp_path, checkpoint_every):
    """Ctrl-C twice (here SIGINT then SIGTERM, which the OS cannot merge into one): before
    the first checkpoint the run folder is removed, after it the line says how to resume."""
    process = train_process(*TINY, "steps=100000", f"output.checkpoint_every={checkpoint_every}",
                            "--output-root", str(tmp_path))
    run_dir = tmp_path / "run"
    wait_until(process, lambda: logged_steps(run_dir) >= 3, "three logged steps")
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    err = finish(process)
    assert process.returncode == 130, err
    last = err.strip().splitlines()[-1]
    if checkpoint_every > 3:
        assert last == f"interrupted: stopped before the first checkpoint; removed {run_dir}"
        assert not run_dir.exists()
    else:
        assert last.startswith("interrupted: continue from step_")
        assert last.endswith(f"with --resume {run_dir}")
        assert list((run_dir / "checkpoints").glob("step_*.pt"))


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(tmp_path):
    process = train_process(*TINY, "steps=6", "--output-root", str(tmp_path))
    run_dir = tmp_path / "run"
    wait_until(process, lambda: logged_steps(run_dir) >= 2, "two logged steps")
    process.kill()  # nothing can tidy up after SIGKILL: the folder has no checkpoint
    process.communicate(timeout=60)
    assert not (run_dir / "checkpoints").exists() or not list((run_dir / "checkpoints").iterdir())
    resumed = train_process("--resume", str(run_dir), "--no-progress")
    err = finish(resumed)
    assert resumed.returncode == 0, err
    assert f"no checkpoint in {run_dir} yet: starting it again from step 0" in err
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert (run_dir / "model.ply").is_file()


def test_ctrl_c_while_a_console_script_imports_is_one_line(tmp_path):
    """``nfsd-gs-train`` runs ``nfsd_gs.cli.train`` (setup.py): the same one line as ``-m``."""
    script = ("import sys; from nfsd_gs.cli import train; "
              "sys.argv = ['nfsd-gs-train', *sys.argv[1:]]; sys.exit(train())")
    process = subprocess.Popen([sys.executable, "-c", script, "--prompt", "a red cone",
                                "--no-progress", "--output-root", str(tmp_path)], env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(process, has_loaded(process, "libtorch"), "importing torch")
    process.send_signal(signal.SIGINT)
    err = finish(process)
    assert err.strip().splitlines() == ["interrupted: before the run started; nothing was written"]
    assert process.returncode != 0 and not any(tmp_path.iterdir())


def test_every_console_script_imports_its_command(monkeypatch):
    """setup.py's console scripts: each names a function of nfsd_gs.cli, which runs a command
    module that imports and has a main(); the function hands that main's status back."""
    import importlib
    import re

    from nfsd_gs import cli

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # run_console_script replaces it
    setup = (Path(__file__).resolve().parent.parent / "setup.py").read_text()
    names = re.findall(r'"(\w+)"', re.search(r'for name in \(([^)]*)\)', setup).group(1))
    assert sorted(names) == sorted(cli.CONSOLE_SCRIPTS)
    for name in names:
        module = importlib.import_module(cli.CONSOLE_SCRIPTS[name])
        assert module.__name__.endswith(".__main__") and callable(module.main), name
        monkeypatch.setattr(module, "main", lambda name=name: f"ran {name}")
        assert getattr(cli, name)() == f"ran {name}"
