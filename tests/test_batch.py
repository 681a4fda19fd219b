"""The prompt catalogue on Ray (issue 12): python -m nfsd_gs.batch.

The first tests read catalogues and plan work without Ray. The last ones run the real
command (a local Ray with 2 workers, the tiny random prior): a bad line fails alone, a
worker SIGKILLed mid-asset is retried from its checkpoint and its model.ply equals the
uninterrupted run's, a second invocation makes nothing, Ctrl-C saves and a rerun finishes.
"""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nfsd_gs.batch.__main__ import main, plan_lines
from nfsd_gs.batch.catalogue import CatalogueError, Defaults, Line, line_config, read_catalogue
from nfsd_gs.config import config_signature
from nfsd_gs.batch.cluster import (DEFAULT_ASSETS_GPU, ClusterError, check_reachable,
                                   plan_workers)
from nfsd_gs.batch.manifest import Manifest, Row

TINY = ("steps=6", "output.snapshot_every=1000")
# One thread per process: the same float reductions in every worker (bit-exact resume).
# RAY_ADDRESS names no cluster: without --address the catalogue starts its own Ray anyway.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_ADDRESS": "127.0.0.1:1"}


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


# ----------------------------------------------------------------------------- catalogue


def test_text_and_json_lines_with_comments(tmp_path):
    prompts = write(tmp_path / "p.txt", "# my catalogue", "", "a red cone",
                    '{"prompt": "a blue cube", "seed": 3, "name": "cube3", '
                    '"overrides": {"guidance.cfg_scale": 7.5, "camera.batch_size": 2}}',
                    '  {"prompt": "a green torus", "overrides": ["steps=12"]}')
    lines = read_catalogue(prompts)
    assert lines == [
        Line(3, "a red cone", "a_red_cone"),
        Line(4, "a blue cube", "cube3", 3, ("guidance.cfg_scale=7.5", "camera.batch_size=2")),
        Line(5, "a green torus", "a_green_torus", None, ("steps=12",)),
    ]
    defaults = Defaults("tiny_test", ("steps=9",), tmp_path / "out")
    config = line_config(lines[1], defaults)
    assert (config.prompt, config.seed, config.steps, config.guidance.cfg_scale) == \
        ("a blue cube", 3, 9, 7.5)
    assert (config.output.root, config.output.name) == (str(tmp_path / "out"), "cube3")
    assert line_config(lines[2], defaults).steps == 12  # the line's own override wins


@pytest.mark.parametrize("text, message", [
    ('{"prompt": "a red cone", "sede": 1}', "unknown key 'sede'"),
    ('{"prompt": "a red cone"', "not a JSON object"),
    ('{"prompt": "a red cone", "seed": "one"}', '"seed" must be an integer'),
    ('{"prompt": "a red cone", "name": "../up"}', "must be a folder name"),
    ('{"prompt": "a red cone", "overrides": "steps=3"}', '"overrides" must be an object'),
    ('{"seed": 1}', '"prompt" must be a string'),
])
def test_a_malformed_line_names_its_place(tmp_path, text, message):
    prompts = write(tmp_path / "p.jsonl", "a red cone", text)
    with pytest.raises(CatalogueError, match=message) as caught:
        read_catalogue(prompts)
    assert f"{prompts}:2" in str(caught.value) and "\n" not in str(caught.value)


def test_duplicate_names_and_unreadable_files_stop_before_any_work(tmp_path, capsys):
    prompts = write(tmp_path / "p.txt", "a red cone", "a blue cube", "A red cone!")
    out = tmp_path / "out"
    assert main([str(prompts), "--output-root", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: duplicate name 'a_red_cone' (lines 1 and 3 of '{prompts}'): give "
                   f"one of them its own \"name\" in a JSON line")
    assert not out.exists()
    assert main([str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot read the PROMPTS file") and "\n" not in err
    assert main([str(write(tmp_path / "empty.txt", "# nothing"))]) == 2
    assert "holds no prompt" in capsys.readouterr().err


def test_an_unreachable_address_is_one_line_at_once(tmp_path, capsys):
    with pytest.raises(ClusterError, match="cannot reach the Ray cluster at --address"):
        check_reachable("ray://127.0.0.1:1")
    with pytest.raises(ClusterError, match="must be auto, host:port or ray://host:port"):
        check_reachable("nowhere")
    prompts = write(tmp_path / "p.txt", "a red cone")
    start = time.monotonic()
    assert main([str(prompts), "--address", "127.0.0.1:1", "--output-root",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot reach the Ray cluster at --address '127.0.0.1:1'")
    assert len(err.splitlines()) == 1 and time.monotonic() - start < 30
    assert not (tmp_path / "out").exists()


def test_bad_global_flags_and_overrides_are_one_line(tmp_path, capsys):
    prompts = write(tmp_path / "p.txt", "a red cone")
    assert main([str(prompts), "--per-gpu", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --per-gpu 0 must be >= 1"
    assert main([str(prompts), "--assets-per-worker", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --assets-per-worker 0 must be >= 1"
    assert main([str(prompts), "guidance.cfg_sclae=3"]) == 2
    assert "guidance.cfg_sclae" in capsys.readouterr().err


def test_workers_per_gpu_and_on_cpu():
    plan = plan_workers({"GPU": 2.0, "CPU": 16.0}, per_gpu=4, workers=None, gpus=None)
    assert (plan.count, plan.num_gpus, plan.num_cpus) == (8, 0.25, 1.0)
    plan = plan_workers({"GPU": 8.0, "CPU": 16.0}, per_gpu=8, workers=None, gpus=2)
    assert (plan.count, plan.num_gpus, plan.num_cpus) == (16, 0.125, 1.0)
    plan = plan_workers({"GPU": 1.0, "CPU": 16.0}, per_gpu=16, workers=None, gpus=None)
    assert plan.count == 16 and plan.num_cpus == 1.0
    plan = plan_workers({"GPU": 1.0, "CPU": 8.0}, per_gpu=16, workers=None, gpus=None)
    assert plan.num_cpus == 0.5  # all 16 fit on 8 CPUs
    plan = plan_workers({"CPU": 2.0}, per_gpu=4, workers=None, gpus=None)
    assert (plan.count, plan.num_gpus, plan.assets) == (2, 0.0, 1)  # one asset a CPU worker
    assert plan_workers({"GPU": 1.0, "CPU": 8.0}, 2, None, None).assets == DEFAULT_ASSETS_GPU
    assert plan_workers({"GPU": 1.0, "CPU": 8.0}, 2, None, None, assets=5).assets == 5
    assert plan_workers({"CPU": 2.0}, per_gpu=4, workers=3, gpus=None).count == 3
    with pytest.raises(ClusterError, match="--workers 3 at --per-gpu 2 needs 2 GPUs; 1 are there"):
        plan_workers({"GPU": 1.0, "CPU": 8.0}, per_gpu=2, workers=3, gpus=None)
    with pytest.raises(ClusterError, match="--gpus 2: the cluster has 1 GPU"):
        plan_workers({"GPU": 1.0, "CPU": 8.0}, per_gpu=1, workers=None, gpus=2)


def test_planning_skips_finished_lines_and_remakes_changed_ones(tmp_path):
    defaults = Defaults("tiny_test", TINY, tmp_path)
    lines = [Line(1, "a red cone", "cone"), Line(2, "a blue cube", "cube"),
             Line(3, "a green torus", "torus"), Line(4, "a red cone", "bad", None, ("steps=x",))]
    signature = {line.name: config_signature(line_config(line, defaults)) for line in lines[:3]}
    for name in ("cone", "cube", "gone"):  # a failed line may have no folder
        (tmp_path / name).mkdir()
    earlier = Manifest(tmp_path / "manifest.jsonl", [
        Row(1, "cone", "a red cone", 0, status="done", run_dir=str(tmp_path / "cone"),
            signature=signature["cone"]),
        Row(2, "cube", "a blue cube", 0, status="done", run_dir=str(tmp_path / "cube"),
            signature="another config"),
        Row(3, "torus", "a green torus", 0, status="failed", run_dir=str(tmp_path / "torus"),
            signature=signature["torus"]),
        Row(9, "gone", "a pink sphere", 0, status="done", run_dir=str(tmp_path / "gone"),
            signature="x"),
    ])
    manifest, jobs = plan_lines(lines, defaults, earlier, retry_failed=False)
    assert [job.line.name for job in jobs] == ["cube"]
    assert [(r.name, r.status) for r in manifest.rows.values()] == [
        ("cone", "done"), ("cube", "pending"), ("torus", "failed"), ("bad", "failed"),
        ("gone", "done")]
    assert "config key 'steps'" in manifest.rows["bad"].error
    _, jobs = plan_lines(lines, defaults, earlier, retry_failed=True)
    assert [job.line.name for job in jobs] == ["cube", "torus"]
    (tmp_path / "cone").rmdir()  # a finished run deleted by hand is made again
    _, jobs = plan_lines(lines, defaults, earlier, retry_failed=False)
    assert [job.line.name for job in jobs] == ["cone", "cube"]


def test_the_counts_a_catalogue_prints_add_up(tmp_path):
    """Issue 27: header `2 of 3 lines to make`, bar `2/2`, end `done 1 failed 2`. The header
    accounts for every line; the bar and its postfix count this invocation's lines only,
    and the postfix is set before the bar ticks (the first tick read `1/3 ... done 0`)."""
    from nfsd_gs.batch.__main__ import plan_summary
    from nfsd_gs.batch.manifest import invocation_summary
    from nfsd_gs.batch.scheduler import Scheduler

    defaults = Defaults("tiny_test", TINY, tmp_path)
    lines = [Line(1, "a red cone", "cone"), Line(2, "a blue cube", "cube"),
             Line(3, "a green torus", "torus"), Line(4, "a red cone", "bad", None, ("steps=x",))]
    signature = {line.name: config_signature(line_config(line, defaults)) for line in lines[:3]}
    (tmp_path / "cone").mkdir()
    earlier = Manifest(tmp_path / "manifest.jsonl", [
        Row(1, "cone", "a red cone", 0, status="done", run_dir=str(tmp_path / "cone"),
            signature=signature["cone"]),
        Row(3, "torus", "a green torus", 0, status="failed", run_dir=str(tmp_path / "torus"),
            signature=signature["torus"])])
    manifest, jobs = plan_lines(lines, defaults, earlier, retry_failed=False)
    assert plan_summary(lines, jobs, manifest) == (
        "1 to make, 1 done earlier, 1 failed earlier (--retry-failed makes them again), "
        "1 bad (failed before starting: see the end)")
    manifest, jobs = plan_lines(lines, defaults, earlier, retry_failed=True)
    assert plan_summary(lines, jobs, manifest) == \
        "2 to make, 1 done earlier, 1 bad (failed before starting: see the end)"

    class Bar:  # what tqdm would draw at each tick
        def __init__(self):
            self.n, self.postfix, self.drawn = 0, "", []

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

        def update(self, count):
            self.n += count
            self.drawn.append((self.n, self.postfix.split(" |")[0]))

    bar = Bar()
    scheduler = Scheduler(jobs, manifest, [], None, 0, bar)
    scheduler._record(jobs[0].row, {"status": "failed", "seconds": 1.0, "error": "diverged"})
    scheduler._record(jobs[1].row, {"status": "done", "seconds": 2.0})
    assert bar.drawn == [(1, "done 0 failed 1 running 0"), (2, "done 1 failed 1 running 0")]
    assert invocation_summary(len(jobs), scheduler.made, scheduler.failed, 7200.0) == \
        "this time: 1 of 2 lines made, 1 failed, 0 not finished, in 7200.0 s (0 assets/hour)"


def test_nothing_to_do_says_so_without_a_rate(tmp_path, capsys):
    """Issue 27: `0 assets made in 0.0 s: 0 assets/hour` came before "nothing to do"."""
    prompts = write(tmp_path / "p.txt", "a red cone", "a blue cube")
    out = tmp_path / "out"
    defaults = Defaults(None, (), out)
    rows = []
    for number, (prompt, name) in enumerate((("a red cone", "a_red_cone"),
                                             ("a blue cube", "a_blue_cube")), 1):
        config = line_config(Line(number, prompt, name), defaults)
        (out / name).mkdir(parents=True)
        rows.append(Row(number, name, prompt, 0, status="done", run_dir=str(out / name),
                        signature=config_signature(config), seconds=3.0))
    Manifest(out / "manifest.jsonl", rows).write()
    assert main([str(prompts), "--output-root", str(out)]) == 0
    captured = capsys.readouterr()
    assert "assets made" not in captured.out and "assets/hour" not in captured.out
    assert "| done | 2 |" in captured.out
    assert captured.err.strip() == ("nothing to do: all 2 lines are finished (2 done earlier; "
                                    f"{out / 'manifest.jsonl'})")


# ----------------------------------------------------------------------------- on Ray

LONG = 24  # steps of the runs that get interrupted: long enough to be caught mid-way
RAY_ARGS = ("--config", "tiny_test", "--workers", "2", "--no-progress", "--threads", "1",
            "output.snapshot_every=1000", "output.log_every=1", "output.checkpoint_every=4")


def batch_process(prompts: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nfsd_gs.batch", str(prompts), *RAY_ARGS,
                             *extra, "--output-root", str(out)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def manifest_rows(out: Path) -> dict:
    path = out / "manifest.jsonl"
    if not path.exists():
        return {}
    return {row["name"]: row for row in map(json.loads, path.read_text().splitlines())}


def logged_steps(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def wait_until(process: subprocess.Popen, condition, what: str) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        assert process.poll() is None, f"the catalogue ended before {what}: {process.stderr.read()}"
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def killed_catalogue(tmp_path_factory):
    """6 lines, one bad; the worker making 'victim' is SIGKILLed after 8 of its 24 steps."""
    root = tmp_path_factory.mktemp("catalogue")
    long = f'"overrides": {{"steps": {LONG}}}'
    prompts = write(root / "prompts.jsonl",
                    "# a worker dies while making 'victim'; 'reference' is the same run, whole",
                    f'{{"prompt": "a red cube", "name": "victim", {long}}}',
                    f'{{"prompt": "a red cube", "name": "reference", {long}}}',
                    '{"prompt": "", "name": "empty"}',
                    *(f'{{"prompt": "{p}", "overrides": {{"steps": 6}}}}'
                      for p in ("a blue cone", "a green torus", "a pink sphere")))
    out = root / "out"
    process = batch_process(prompts, out)
    wait_until(process, lambda: logged_steps(out / "victim") >= 8, "victim's step 8")
    worker = manifest_rows(out)["victim"]["worker"]
    os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    return prompts, out, process.returncode, stdout, stderr, worker


def test_a_bad_line_fails_alone_and_a_killed_worker_is_retried(killed_catalogue):
    _, out, returncode, stdout, stderr, worker = killed_catalogue
    assert returncode == 1, stderr  # a line failed
    # issue 27: counts that add up, and no warning from Ray at every start
    assert stderr.startswith("6 lines: 6 to make; 2 workers, "), stderr
    assert "this time: 5 of 6 lines made, 1 failed, 0 not finished" in stdout
    assert "Token authentication" not in stderr
    rows = manifest_rows(out)
    assert sorted(r["status"] for r in rows.values()) == ["done"] * 5 + ["failed"]
    assert rows["empty"]["error"] == 'the prompt is empty: pass --prompt "a red cone" (or prompt=...)'
    assert "failed: line 4 'empty': the prompt is empty" in stdout
    victim = rows["victim"]
    assert victim["attempts"] == 2 and victim["worker"] != worker
    assert f"attempt 1: its worker process ({worker}) died" in victim["retried"]
    assert victim["start_step"] > 0 and victim["start_step"] % 4 == 0  # its last checkpoint
    assert (out / "victim" / "model.ply").read_bytes() == \
        (out / "reference" / "model.ply").read_bytes()
    for row in rows.values():
        assert Path(row["run_dir"]) == out / row["name"]
        if row["status"] == "done":
            assert (out / row["name"] / "model.ply").exists() and row["num_gaussians"] > 0
    assert not list(out.rglob("*.tmp*"))


def test_a_second_invocation_makes_nothing(killed_catalogue):
    prompts, out, *_ = killed_catalogue
    manifest = (out / "manifest.jsonl").read_bytes()
    models = {p: p.stat().st_mtime_ns for p in out.rglob("model.ply")}
    process = batch_process(prompts, out)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1  # the bad line is still failed
    assert "nothing to do: all 6 lines are finished (5 done earlier, 1 failed earlier" in stderr
    assert (out / "manifest.jsonl").read_bytes() == manifest
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.ply")} == models


def test_ctrl_c_saves_running_assets_and_the_same_command_finishes(tmp_path):
    long = f'"overrides": {{"steps": {LONG}}}'
    prompts = write(tmp_path / "prompts.jsonl", *(f'{{"prompt": "{p}", {long}}}' for p in
                                                   ("a red cube", "a blue cone", "a green torus")))
    out = tmp_path / "out"
    process = batch_process(prompts, out)
    wait_until(process, lambda: logged_steps(out / "a_red_cube") >= 5, "step 5")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 2, stderr
    assert re.fullmatch(r"stopped \(Ctrl-C\): [123] lines not finished \(saved at their "
                        r"last checkpoint\); run the same command again to continue",
                        stderr.strip().splitlines()[-1])
    rows = manifest_rows(out)
    stopped = [name for name, row in rows.items() if (row["error"] or "").startswith("stopped at")]
    assert "a_red_cube" in stopped
    for name, row in rows.items():
        assert row["status"] == ("skipped" if name in stopped or row["attempts"] == 0 else "done")
        if name in stopped:  # the trainer's stop path: a checkpoint and the model
            assert (out / name / "model.ply").exists()
            assert list((out / name / "checkpoints").glob("*.pt"))
        elif row["attempts"] == 0:
            assert row["error"] == "not started: the catalogue stopped first"
    assert not list(out.rglob("*.tmp*"))

    earlier = rows
    again = subprocess.run(process.args, env=ENV, text=True, capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr
    rows = manifest_rows(out)
    assert [r["status"] for r in rows.values()] == ["done"] * 3
    for name in stopped:  # each continued from the step where it stopped
        assert f"stopped at step {rows[name]['start_step']}:" in earlier[name]["error"]
        assert earlier[name]["end_step"] == rows[name]["start_step"]
    assert all(row["end_step"] == LONG for row in rows.values())
    assert rows["a_red_cube"]["start_step"] >= 5


# ----------------------------------------------------------------------------- several assets
# per worker: one process, --assets-per-worker 3 (issue 24)

POOL = ("--workers", "1", "--assets-per-worker", "3")


@pytest.fixture(scope="module")
def killed_pool(tmp_path_factory):
    """4 lines of 24 steps, one worker training 3 at once; it is SIGKILLed at 'victim''s
    step 8, with 'a' and 'b' live beside it; 'reference' (victim's twin) waits for a slot."""
    from test_batched import ONE_REFINEMENT

    root = tmp_path_factory.mktemp("pool")
    key, value = ONE_REFINEMENT.split("=")
    long = f'"overrides": {{"steps": {LONG}, "{key}": {value}}}'
    prompts = write(root / "prompts.jsonl",
                    f'{{"prompt": "a red cube", "name": "victim", {long}}}',
                    f'{{"prompt": "a blue cone", "name": "a", {long}}}',
                    f'{{"prompt": "a green torus", "name": "b", {long}}}',
                    f'{{"prompt": "a red cube", "name": "reference", {long}}}')
    out = root / "out"
    process = batch_process(prompts, out, *POOL)
    wait_until(process, lambda: logged_steps(out / "victim") >= 8, "victim's step 8")
    rows = manifest_rows(out)
    live = sorted(name for name, row in rows.items() if row["status"] == "running")
    worker = rows["victim"]["worker"]
    os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=600)
    return out, process.returncode, stdout, stderr, worker, live


def test_a_killed_pool_retries_every_live_line_from_its_checkpoint(killed_pool):
    from test_batched import assert_same_asset

    out, returncode, stdout, stderr, worker, live = killed_pool
    assert returncode == 0, stderr
    assert live == ["a", "b", "victim"]  # three at once in the one worker; reference waited
    rows = manifest_rows(out)
    assert [row["status"] for row in rows.values()] == ["done"] * 4
    for name in live:
        row = rows[name]
        assert row["attempts"] == 2 and row["worker"] != worker, row
        assert f"attempt 1: its worker process ({worker}) died" in row["retried"]
        assert row["start_step"] > 0 and row["start_step"] % 4 == 0  # its last checkpoint
    assert rows["reference"]["attempts"] == 1 and rows["reference"]["start_step"] == 0
    # the victim, killed and resumed beside others, is its twin made in one go beside others
    assert_same_asset(out / "victim" / "model.ply", out / "reference" / "model.ply")
    assert not list(out.rglob("*.tmp*"))


def test_ctrl_c_saves_every_asset_of_a_pool_and_the_same_command_finishes(tmp_path):
    long = f'"overrides": {{"steps": {LONG}}}'
    prompts = write(tmp_path / "prompts.jsonl", *(f'{{"prompt": "{p}", {long}}}' for p in
                                                   ("a red cube", "a blue cone", "a green torus",
                                                    "a pink sphere")))
    out = tmp_path / "out"
    process = batch_process(prompts, out, *POOL)
    wait_until(process, lambda: logged_steps(out / "a_red_cube") >= 5, "step 5")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 2, stderr
    rows = manifest_rows(out)
    stopped = sorted(name for name, row in rows.items()
                     if (row["error"] or "").startswith("stopped at"))
    assert stopped == ["a_blue_cone", "a_green_torus", "a_red_cube"]  # the pool's three
    for name in stopped:
        assert rows[name]["status"] == "skipped"
        assert (out / name / "model.ply").exists()
        assert list((out / name / "checkpoints").glob("*.pt"))
    assert rows["a_pink_sphere"]["status"] == "skipped" and not rows["a_pink_sphere"]["attempts"]

    again = subprocess.run(process.args, env=ENV, text=True, capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr
    rows = manifest_rows(out)
    assert [r["status"] for r in rows.values()] == ["done"] * 4
    assert all(rows[name]["start_step"] >= 5 for name in stopped)
