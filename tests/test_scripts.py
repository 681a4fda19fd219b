"""Every script in scripts/ runs here, in a dry run on the CPU (issue 23): a renamed function
or flag fails this suite, not the next GPU run. GPU scripts run with DRY_RUN=1 (tiny priors,
1-2 steps, under set -euo pipefail); Python scripts with tiny arguments or --dry-run.

They run two at a time (each dry run uses one thread: OMP_NUM_THREADS=1), once per module;
each test checks one script's status and that its dry run made what it should. Only the
scripts the selected tests read run (`-k gpu_eval` runs gpu_eval.sh's chain and
gpu_eval_world.sh's, not every script's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
#: gpu_eval.sh's dry run evaluates a list of its own (two prompts outside the split's set).
EVAL_KNOBS = {"PROMPTS": "a pink torus,a cyan pyramid"}
#: Sourced by the GPU scripts, not run on its own.
LIBRARIES = {"common.sh"}
#: Run by another script's dry run (with the arguments that script gives them).
INSIDE = {"merge_eval.py": "gpu_eval.sh", "bench_mesh.py": "gpu_mesh.sh",
          "bench_catalogue.py": "gpu_batch.sh"}
#: The Python scripts' tiny arguments (None: its own job below).
PYTHON = {
    "bench_formats.py": ["--counts", "1000", "--repeats", "1"],
    "bench_viewer.py": ["--steps", "10", "--repeats", "1", "--modes", "viewer"],
    "checkpoint_cost.py": ["--counts", "1000", "--sh-degrees", "0", "--repeats", "1"],
    "nerf_cpu_cost.py": ["--dry-run", "--steps", "1", "default"],
    "prior_throughput.py": ["--dry-run", "--device", "cpu", "--batch-sizes", "2", "--steps", "1"],
    "vsd_probe.py": ["--dry-run", "--out", "{out}"],
    "spark_check.py": None,
    "strip_metrics.py": None,
}
#: Tests that read other dry runs than their ``name`` parameter's (None: every script's).
READS: Dict[str, Optional[Set[str]]] = {
    "test_the_dry_runs_made_what_they_measure": None,
    "test_the_evaluations_make_their_worst_sheet": {"gpu_eval.sh", "gpu_eval_world.sh",
                                                    "gpu_testbed.sh"},
}
IN_CI = bool(os.environ.get("NFSD_REQUIRE_BROWSER") or os.environ.get("CI"))


@dataclass
class Ran:
    command: List[str]
    returncode: int
    output: str
    seconds: float
    out: Path

    def explain(self) -> str:
        return f"{' '.join(self.command)} -> {self.returncode}:\n{self.output[-4000:]}"


def run(command: List[str], out: Path, knobs: Optional[Dict[str, str]] = None) -> Ran:
    env = {**os.environ, "DRY_RUN": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "127.0.0.1:1", **(knobs or {})}
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=900)
        code, output = result.returncode, result.stdout + result.stderr
    except subprocess.TimeoutExpired as err:
        code, output = -1, f"timed out after {err.timeout} s"
    return Ran(command, code, output, time.perf_counter() - start, out)


def shell(name: str, root: Path, *args: str, knobs: Optional[Dict[str, str]] = None) -> Ran:
    """Run a GPU script's dry run; ``knobs``: its environment knobs (PROMPTS=...)."""
    out = root / name
    return run(["bash", str(SCRIPTS / name), str(out), *args], out, knobs)


def python(name: str, root: Path, *args: str) -> Ran:
    """Run a Python script; ``{out}`` in its arguments is its own output folder."""
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    return run([sys.executable, str(SCRIPTS / name),
                *(a.replace("{out}", str(out)) for a in args)], out)


def spark_check(root: Path) -> Optional[Ran]:
    """Spark's reader on a small .ply (None: no Chromium or Spark here, outside CI)."""
    from browser.headless import find_chromium
    from nfsd_gs.viewer.static import page_installed

    if find_chromium() is None or not page_installed():
        return None
    import torch

    from nfsd_gs.formats.ply import save_ply

    out = root / "spark_check.py"
    out.mkdir(parents=True)
    n = 64
    save_ply(out / "model.ply", {"means": torch.rand(n, 3) - 0.5, "scales": torch.full((n, 3), -3.0),
                                 "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                                 "opacities": torch.full((n,), 2.0), "sh0": torch.zeros(n, 1, 3),
                                 "shN": torch.zeros(n, 0, 3)})
    return run([sys.executable, str(SCRIPTS / "spark_check.py"), str(out / "model.ply"),
                "--out", str(out / "spark.png"), "--seconds", "0.5"], out)


def jobs(root: Path, wanted: Optional[Set[str]] = None
         ) -> Dict[str, Callable[[], Dict[str, Optional[Ran]]]]:
    """Independent chains of runs, keyed by their first script; slowest first. ``wanted``:
    only the chains that run one of these scripts (None: all)."""
    followers: Dict[str, str] = {}

    def then(first: str, runner, second: str, follow) -> Callable[[], Dict[str, Optional[Ran]]]:
        followers[first] = second

        def chain():
            done = runner()
            return {first: done, second: follow(done) if done.returncode == 0 else None}
        return chain

    chains: Dict[str, Callable] = {
        "gpu_world.sh": then("gpu_world.sh", lambda: shell("gpu_world.sh", root),
                             "install_world_assets.sh",  # installs the weights gpu_world.sh made
                             lambda done: run(["bash", str(SCRIPTS / "install_world_assets.sh"),
                                               str(done.out)], done.out)),
        "gpu_eval.sh": then("gpu_eval.sh", lambda: shell("gpu_eval.sh", root, knobs=EVAL_KNOBS),
                            "strip_metrics.py",
                            lambda done: python("strip_metrics.py", root,
                                                str(done.out / "eval" / "part0" / "strips"),
                                                "--align-yaws", "8",
                                                "--align-scales", "0.65", "1.3", "3")),
    }
    names = sorted(p.name for p in SCRIPTS.iterdir() if p.suffix == ".sh")
    for name in names:
        if name not in LIBRARIES and name not in chains and name != "install_world_assets.sh":
            chains[name] = (lambda name=name: {name: shell(name, root)})
    for name, args in PYTHON.items():
        if args is not None:
            chains[name] = (lambda name=name, args=args: {name: python(name, root, *args)})
    chains["spark_check.py"] = lambda: {"spark_check.py": spark_check(root)}
    slow_first = ["gpu_batch.sh", "gpu_vsd.sh", "gpu_core.sh", "gpu_eval.sh", "gpu_world.sh"]
    order = slow_first + sorted(set(chains) - set(slow_first))
    return {name: chains[name] for name in order
            if wanted is None or {name, followers.get(name)} & wanted}


def wanted_scripts(items) -> Optional[Set[str]]:
    """The scripts whose dry runs the selected tests of this module read (None: all)."""
    wanted: Set[str] = set()
    for item in items:
        if getattr(item, "module", None) is None or item.module.__name__ != __name__:
            continue
        name = getattr(item, "originalname", item.name)
        if name in READS:
            if READS[name] is None:
                return None
            wanted |= READS[name]
        elif hasattr(item, "callspec") and "name" in item.callspec.params:
            wanted.add(item.callspec.params["name"])
    return wanted


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory, request) -> Dict[str, Optional[Ran]]:
    root = tmp_path_factory.mktemp("scripts")
    results: Dict[str, Optional[Ran]] = {}
    start = time.perf_counter()
    chains = jobs(root, wanted_scripts(request.session.items))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in pool.map(lambda chain: chain(), chains.values()):
            results.update(done)
    wall = time.perf_counter() - start
    slowest = sorted(((r.seconds, n) for n, r in results.items() if r), reverse=True)[:5]
    print(f"\nscripts' dry runs: {wall:.0f} s wall; slowest: "
          + ", ".join(f"{n} {s:.0f} s" for s, n in slowest), file=sys.stderr)
    return results


def every_script() -> List[str]:
    return sorted(p.name for p in SCRIPTS.iterdir() if p.suffix in (".sh", ".py"))


def test_every_script_has_a_dry_run():
    covered = LIBRARIES | set(INSIDE) | set(PYTHON) | {
        p.name for p in SCRIPTS.iterdir() if p.suffix == ".sh"}
    assert set(every_script()) <= covered, set(every_script()) - covered
    for script in SCRIPTS.glob("*.sh"):
        if script.name in LIBRARIES:
            continue
        text = script.read_text()
        assert "set -euo pipefail" in text and 'common.sh"' in text, script.name
    for outer in INSIDE.values():
        assert (SCRIPTS / outer).is_file()


@pytest.mark.parametrize("name", [n for n in every_script()
                                  if n not in LIBRARIES and n not in INSIDE])
def test_the_dry_run_succeeds(dry_runs, name):
    ran = dry_runs.get(name)
    if ran is None and name == "spark_check.py":
        if IN_CI:
            pytest.fail("spark_check.py needs Chromium and Spark (npm ci --prefix viewer/web)")
        pytest.skip("no Chromium or Spark here")
    assert ran is not None, f"{name} did not run (the script before it in its chain failed)"
    assert ran.returncode == 0, ran.explain()


def rows(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_dry_runs_made_what_they_measure(dry_runs):
    """Each dry run went through its parts (the failure the issue names: scripts that ran on
    and measured nothing)."""
    out = {name: ran.out for name, ran in dry_runs.items() if ran is not None}
    batch = json.loads((out["gpu_batch.sh"] / "results.json").read_text())["rows"]
    assert [(r["part"], r["m"], r["lines"], r["done"]) for r in batch] == [
        ("loop", None, 1, 1), ("cell_m2_k1", 2, 2, 0), ("e2e", 2, 2, 2), ("eval", 2, 2, 2)]
    window, whole = batch[1], batch[2]  # stopped by its window mid-way; made to the end
    assert window["stopped"] and 0 < window["asset_steps"] < 2 * 40 and window["rate"] > 0
    assert not whole["stopped"] and whole["asset_steps"] == 2 * 40 and whole["per_hour"] > 0
    evaluation = json.loads((out["gpu_eval.sh"] / "results.json").read_text())
    assert evaluation["meta"]["status"] == "complete" and len(evaluation["rows"]) == 2
    assert sorted(r["prompt"] for r in evaluation["rows"]) == sorted(EVAL_KNOBS["PROMPTS"].split(","))
    assert all(row["error"] is None for row in evaluation["rows"])
    assert "| nfsd_7_5 | 1 |" in dry_runs["strip_metrics.py"].output
    world = json.loads((out["gpu_eval_world.sh"] / "results.json").read_text())["rows"]
    assert sorted((r["variant"], r["representation"], r["assets_at_once"], r["error"])
                  for r in world) == [("nerf", "nerf", 2, None)] * 2 + \
        [("nfsd@7.5", "gaussians", 2, None)] * 2
    assert "| new | ddim-glide | solid | 7.5 | 48 |" in (out["gpu_world.sh"] / "summary.md").read_text()
    assert "| tiny | ddim-glide | solid | 7.5 | 48 |" in dry_runs["gpu_prior_check.sh"].output
    assert "installed into" in dry_runs["install_world_assets.sh"].output
    assert "dry run: .whl_noray as planned" in dry_runs["fetch_device_wheels.sh"].output
    for encoder in ("vae", "taesd"):  # the asset with its start-up profile, the lever rows
        asset = json.loads((out["gpu_asset.sh"] / f"asset_{encoder}.json").read_text())
        assert asset["asset"]["encoder"] == encoder and asset["asset"]["steps"] == 4
        assert "load U-Net" in asset["asset"]["startup_profile"]
        levers = [row["lever"] for row in asset["levers"]["rows"]]
        assert levers == (["baseline", "direct-load-fp16-files", "negative-where-used", "defaults"]
                          if encoder == "vae" else ["baseline", "defaults"])
    curve = (out["gpu_steps_curve.sh"] / "curve.md").read_text()  # 2 prompts x seed 0
    assert "| 1 | 2 |" in curve and "| 2 | 2 |" in curve and "The fewest steps" in curve
    report = (out["gpu_asset.sh"] / "levers.md").read_text()
    assert "| negative-where-used |" in report and "| start-up phase | s | share |" in report
    assert "Skipped" not in report
    assert "| `nfsd_gs.train.__main__` (depth 0) |" in report  # the imports' profile
    vsd = (out["gpu_vsd.sh"] / "summary.md").read_text()  # two evaluation processes, merged
    assert "| nfsd@7.5 | 2 (2 x 1) | 0 |" in vsd and "| vsd@7.5 | 2 (2 x 1) | 0 |" in vsd
    assert "| sds | 2 |" in vsd and " | 1.00x |" in vsd  # the lever table, against SDS
    levers = json.loads((out["gpu_vsd.sh"] / "bench.json").read_text())
    assert [(r["variant"], r["method"]) for r in levers] == [
        ("sds", "sds"), ("vsd-before", "vsd"), ("vsd-1view-graph", "vsd")]
    assert levers[2]["lora_ms"] > 0 and levers[2]["overrides"] == [
        "guidance.vsd.views=1", "guidance.vsd.cuda_graph=true"]
    assert json.loads((out["gpu_vsd.sh"] / "eval.json").read_text())["meta"]["status"] == "complete"
    assert json.loads((out["gpu_core.sh"] / "bench.json").read_text())[0]["method"] == "nfsd"
    assert rows(out["gpu_core.sh"] / "run200_metrics.jsonl")[-1]["step"] == 2
    for asset in ("red_cone", "synthetic"):  # one row per asset, resolution and texture
        mesh_rows = json.loads((out["gpu_mesh.sh"] / f"mesh_{asset}.json").read_text())
        assert [(r["resolution"], r["texture"]) for r in mesh_rows] == [
            (24, 0), (24, 64), (32, 0), (32, 64)]
        assert all(r["faces"] > 0 and r["total_s"] > 0 for r in mesh_rows)
        assert all(r["unwrap_s"] > 0 for r in mesh_rows if r["texture"])
    assert "| synthetic_3k | 3,000 | 32 | 64 |" in (out["gpu_mesh.sh"] / "summary.md").read_text()
    assert not (out["gpu_mesh.sh"] / "work").exists()
    assert "| nerf_small | a red cone | 0 |" in (out["gpu_nerf_default.sh"] / "summary.md").read_text()
    assert "| grey-init | a red cone | 0 |" in (out["gpu_sweep_gaussians.sh"] / "results.md").read_text()
    assert "| nfsd@7.5 | 1 (1 x 1) | 0 |" in (out["gpu_testbed.sh"] / "solid_results.md").read_text()
    testbed_rows = json.loads((out["gpu_testbed.sh"] / "solid_results.json").read_text())["rows"]
    assert [r["assets_at_once"] for r in testbed_rows] == [2]  # the group's "nfsd@7.5:1:2"
    assert "repacked:" in dry_runs["repack_ray_wheel.sh"].output
    assert sorted(p.name for p in out["gpu_levers.sh"].iterdir()) == [
        "levers.json", "levers.md", "levers.tgz", "results.json", "results.md"]
    assert dry_runs["gpu_levers.sh"].output.rstrip().splitlines()[-1].startswith("| gs-combo |")
    assert "| 1,000 | 0 |" in dry_runs["checkpoint_cost.py"].output
    assert "| viewer |" in dry_runs["bench_viewer.py"].output
    probe = json.loads((out["vsd_probe.py"] / "summary.json").read_text())
    assert [r["setting"] for r in probe] == ["nfsd@7.5", "vsd-pd@7.5"] and probe[1]["m_3"] is not None


def test_the_evaluations_make_their_worst_sheet(dry_runs):
    """Issues 21 and 22's strips of the worst prompts of each, with no hand work: every
    evaluation script brings back the sheet (and gpu_eval.sh its list), within the 8 files
    a GPU call returns."""
    from PIL import Image

    for name, sheet in (("gpu_eval.sh", "worst.png"), ("gpu_eval_world.sh", "worst.png"),
                        ("gpu_testbed.sh", "solid_worst.png")):
        ran = dry_runs[name]
        assert ran.returncode == 0, ran.explain()
        with Image.open(ran.out / sheet) as image:
            assert image.width >= 512 and image.height >= 128  # at least one 8-view strip
        files = [p for p in ran.out.iterdir() if p.is_file()]
        assert len(files) <= 8, sorted(p.name for p in files)
    for name in ("gpu_eval.sh", "gpu_eval_world.sh"):
        text = (dry_runs[name].out / "worst.md").read_text()
        assert "![The worst runs of each variant](worst.png)" in text and "\n1. a " in text
    world = (dry_runs["gpu_eval_world.sh"].out / "worst.md").read_text()
    assert "## nfsd@7.5 (the worst 2 of 2 runs)" in world and "## nerf (" in world
    assert "(no strip)" not in world  # every strip found in the parts' folders
