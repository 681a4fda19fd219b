"""Catalogue throughput on one GPU (issue 24): the measurement of scripts/gpu_batch.sh.

    python scripts/bench_catalogue.py --prompts world.txt --work /tmp/w --out OUT \\
        --cells 1:1,8:1,32:1,8:4,16:2 --window-s 15 --budget-s 480 [--override KEY=VALUE ...]

Parts, in this order, each only while it still fits ``--budget-s`` (else listed as skipped);
every wall time includes the command's start-up (Python, Ray, the workers' prior loads):

* ``loop``: the shell loop, ``python -m nfsd_gs.train`` once per prompt (``--loop`` prompts);
* ``cell M:K``: ``python -m nfsd_gs.batch`` with ``--assets-per-worker M --per-gpu K`` on
  min(#prompts, M x K) prompts (every slot busy, none refilled), stopped by SIGINT
  ``--window-s`` seconds after its first run folder appeared (the live assets save their
  checkpoint). Its rate: asset-steps made (from the manifest: done lines count all their
  steps, stopped ones the step they stopped at) per second of that window; start-up: command
  start to first run folder; "48 modelled": #prompts / (start-up + #prompts x steps / rate);
* ``e2e``: the cell of the best modelled rate (``--e2e-cell`` to choose) on every prompt, to
  the end: measured end-to-end assets/hour, with the judge's verdict on every asset;
* ``eval``: ``python -m nfsd_gs.eval`` on the same prompts and seed (``--eval-parts``
  processes of ``--eval-assets`` runs at once, merged by scripts/merge_eval.py), and the
  judge's mean accuracies of the catalogue's assets against the evaluation's;
* ``sd M``: the SD-2.1-base-shaped catalogue (``--config nfsd_gs``, ``--sd-prior``), 2
  prompts, ``--sd-steps`` steps, one worker of M assets, to the end.

Writes OUT/results.json (every measured row) and OUT/results.md (the tables, printed too).
A window is a steady-state sample of the first steps (few Gaussians yet for large M x K);
the e2e row is the full profile, and how far its measured rate falls from its cell's
modelled one says how much the sample flatters.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's nfsd_gs

from nfsd_gs.utils.io import write_json  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=Path, required=True, help="one prompt a line")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (runs, logs)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default=None, help="preset of the bundled-prior parts")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="for every bundled-prior run (repeat)")
    parser.add_argument("--steps", type=int, default=400, help="the config's steps (for rates)")
    parser.add_argument("--loop", type=int, default=2, help="prompts of the shell loop")
    parser.add_argument("--cells", default="1:1,8:1,32:1,8:4,16:2", help="M:K,M:K,...")
    parser.add_argument("--window-s", type=float, default=15.0)
    parser.add_argument("--e2e-cell", default=None, help="M:K of the end-to-end run "
                                                         "(default: the best modelled cell)")
    parser.add_argument("--no-e2e", action="store_true")
    parser.add_argument("--eval-parts", type=int, default=4)
    parser.add_argument("--eval-assets", type=int, default=12)
    parser.add_argument("--eval-args", default="", help="extra nfsd_gs.eval arguments")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--sd-ms", default="1,2", help="assets per worker of the SD rows ('' none)")
    parser.add_argument("--sd-steps", type=int, default=150)
    parser.add_argument("--sd-prior", default="random:sd21-base")
    parser.add_argument("--sd-override", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--budget-s", type=float, default=480.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    return parser.parse_args(argv)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.start = time.monotonic()
        self.prompts = [p for p in args.prompts.read_text().splitlines() if p.strip()]
        self.rows: List[Dict] = []
        self.skipped: List[str] = []
        self.judge: Dict = {}
        args.work.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ helpers

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.start)

    def fits(self, name: str, need_s: float) -> bool:
        if self.left() < need_s:
            self.skipped.append(f"skip {name}: {self.left():.0f} s left, needs ~{need_s:.0f} s")
            print(self.skipped[-1], file=sys.stderr, flush=True)
            return False
        return True

    def log(self, name: str):
        return open(self.args.work / f"{name}.log", "w")

    def bundled(self) -> List[str]:
        return ([f"--config={self.args.config}"] if self.args.config else []) + self.args.override

    def write_prompts(self, name: str, prompts: Sequence[str]) -> Path:
        path = self.args.work / f"{name}.txt"
        path.write_text("".join(p + "\n" for p in prompts))
        return path

    def catalogue(self, name: str, prompts: Path, m: int, k: int, extra: Sequence[str],
                  window_s: Optional[float], steps: int) -> Dict:
        """One catalogue command of ``steps``-step lines; with ``window_s``, SIGINT that long
        after its first run folder appeared (also when the budget runs out). Its row."""
        out = self.args.work / name
        command = [sys.executable, "-m", "nfsd_gs.batch", str(prompts), "--no-progress",
                   "--per-gpu", str(k), "--assets-per-worker", str(m), "--output-root", str(out),
                   "--threads", str(self.args.threads), *extra]
        t0 = time.monotonic()
        first = stopped = None
        with self.log(name) as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            while process.poll() is None:
                now = time.monotonic()
                if first is None and list(out.glob("*/config.yaml")):
                    first = now
                if (window_s is not None and first is not None and now - first >= window_s) \
                        or self.left() <= 0:
                    stopped = now
                    process.send_signal(signal.SIGINT)  # live assets save their checkpoint
                    break
                time.sleep(0.05)
            try:
                rc = process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                rc = process.wait()
        wall = time.monotonic() - t0
        path = out / "manifest.jsonl"
        manifest = [json.loads(line) for line in path.read_text().splitlines()] \
            if path.exists() else []
        made, done = 0, 0
        for row in manifest:
            start = row.get("start_step") or 0
            if row["status"] == "done":
                done += 1
                made += steps - start
            elif row.get("end_step") is not None:  # stopped: saved at that step
                made += row["end_step"] - start
        if stopped is not None and first is not None:
            window = stopped - first
        else:  # every line finished: first run folder to last model
            folders = [p.stat().st_mtime for p in out.glob("*/config.yaml")]
            models = [p.stat().st_mtime for p in out.glob("*/model.ply")]
            window = max(models) - min(folders) if folders and models else None
        peaks = [r["peak_mem_mib"] for r in manifest if r.get("peak_mem_mib")]
        return dict(part=name, m=m, k=k, lines=len(manifest), done=done, asset_steps=made,
                    rc=rc, wall_s=wall, startup_s=(first - t0) if first else None,
                    window_s=window, rate=made / window if window and made else None,
                    per_hour=3600 * done / wall if done else 0.0,
                    peak_mem_mib=max(peaks) if peaks else None, stopped=stopped is not None,
                    manifest=str(path))

    # ------------------------------------------------------------------ parts

    def loop(self) -> None:
        n = min(self.args.loop, len(self.prompts))
        if n < 1 or not self.fits("loop", 15 * n):
            return
        out = self.args.work / "loop"
        t0 = time.monotonic()
        rc = 0
        with self.log("loop") as log:
            for prompt in self.prompts[:n]:
                rc = subprocess.call([sys.executable, "-m", "nfsd_gs.train", "--no-progress",
                                      "--prompt", prompt, "--output-root", str(out),
                                      *self.bundled()], stdout=log, stderr=subprocess.STDOUT)
                if rc:
                    break
        wall = time.monotonic() - t0
        made = len(list(out.glob("*/model.ply")))
        self.rows.append(dict(part="loop", m=None, k=None, lines=n, done=made, rc=rc,
                              wall_s=wall, per_hour=3600 * made / wall))

    def cells(self) -> None:
        for cell in filter(None, self.args.cells.split(",")):
            m, k = (int(x) for x in cell.split(":"))
            lines = min(len(self.prompts), m * k)
            if not self.fits(f"cell {cell}", self.args.window_s + 25):
                continue
            prompts = self.write_prompts(f"cell_m{m}_k{k}", self.prompts[:lines])
            row = self.catalogue(f"cell_m{m}_k{k}", prompts, m, k, self.bundled(),
                                 self.args.window_s, self.args.steps)
            n = len(self.prompts)
            if row["rate"] and row["startup_s"] is not None:
                row["modelled_per_hour"] = 3600 * n / (row["startup_s"]
                                                       + n * self.args.steps / row["rate"])
            self.rows.append(row)
            print(f"cell {cell}: {row['asset_steps']} asset-steps in {row['window_s'] or 0:.1f} s "
                  f"(rc {row['rc']})", file=sys.stderr, flush=True)

    def best_cell(self) -> Optional[str]:
        if self.args.e2e_cell:
            return self.args.e2e_cell
        cells = [r for r in self.rows if r.get("modelled_per_hour")]
        if not cells:
            return None
        best = max(cells, key=lambda r: r["modelled_per_hour"])
        return f"{best['m']}:{best['k']}"

    def e2e(self) -> Optional[Dict]:
        cell = None if self.args.no_e2e else self.best_cell()
        if cell is None:
            return None
        m, k = (int(x) for x in cell.split(":"))
        modelled = next((r.get("modelled_per_hour") for r in self.rows
                         if (r.get("m"), r.get("k")) == (m, k) and r["part"].startswith("cell")),
                        None)
        need = 3600 * len(self.prompts) / modelled + 20 if modelled else 60
        if not self.fits(f"e2e {cell}", need):
            return None
        prompts = self.write_prompts("e2e", self.prompts)
        row = self.catalogue(f"e2e_m{m}_k{k}", prompts, m, k, self.bundled(), None,
                             self.args.steps)
        row["part"] = "e2e"
        self.rows.append(row)
        return row

    def evaluate(self, e2e: Optional[Dict]) -> None:
        if self.args.no_eval:
            return
        if e2e is None:  # nothing to compare the judge with: say so, as a skipped part
            self.skipped.append("skip eval: no end-to-end run to compare it with")
            print(self.skipped[-1], file=sys.stderr, flush=True)
            return
        if not self.fits("eval", 0.8 * e2e["wall_s"] + 20):
            return
        parts = max(1, min(self.args.eval_parts, len(self.prompts)))
        out = self.args.work / "eval"
        t0 = time.monotonic()
        processes = []
        for part in range(parts):
            chosen = self.prompts[part::parts]
            command = [sys.executable, "-m", "nfsd_gs.eval", "--variants", "nfsd@7.5",
                       "--seeds", "0", "--prompts", ",".join(chosen), "--out",
                       str(out / f"part{part}"), "--assets-per-process",
                       str(self.args.eval_assets), "--no-warmup",
                       *self.args.eval_args.split(), *self.bundled()]
            log = self.log(f"eval_part{part}")
            processes.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT),
                              log))
        rcs = []
        for process, log in processes:
            try:
                rcs.append(process.wait(timeout=max(self.left(), 30)))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
                rcs.append(process.wait())
            log.close()
        wall = time.monotonic() - t0
        sources = [str(p) for p in sorted(out.glob("part*")) if (p / "results.json").exists()]
        if sources:
            with self.log("eval_merge") as log:
                subprocess.call([sys.executable, str(Path(__file__).with_name("merge_eval.py")),
                                 str(out / "merged"), *sources], stdout=log,
                                stderr=subprocess.STDOUT)
        merged = out / "merged" / "results.json"
        rows = json.loads(merged.read_text())["rows"] if merged.exists() else []
        runs = [r for r in rows if not r.get("error")]
        self.rows.append(dict(part="eval", m=self.args.eval_assets, k=parts, lines=len(rows),
                              done=len(runs), rc=max(rcs), wall_s=wall,
                              per_hour=3600 * len(runs) / wall))
        self.judge = compare_judge(e2e["manifest"], runs)

    def sd(self) -> None:
        prompts = self.write_prompts("sd", ["a DSLR photo of a corgi", "a ceramic teapot"])
        for m in [int(x) for x in self.args.sd_ms.split(",") if x.strip()]:
            # ~25 s of start-up (the random SD-sized prior is built on the GPU), ~0.13 s a
            # step at M=1 (BENCHMARKS.md, "GPU step"), two prompts one after the other
            if not self.fits(f"sd M={m}", 30 + self.args.sd_steps * 0.13 * (2 if m == 1 else 1.6)):
                continue
            row = self.catalogue(f"sd_m{m}", prompts, m, 1,
                                 ["--config", "nfsd_gs", f"prior.model={self.args.sd_prior}",
                                  f"steps={self.args.sd_steps}", *self.args.sd_override], None,
                                 self.args.sd_steps)
            row["part"] = "sd"
            self.rows.append(row)

    # ------------------------------------------------------------------ report

    def report(self) -> str:
        loop = next((r["per_hour"] for r in self.rows if r["part"] == "loop"), None)
        f = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        lines = ["| part | M | K | lines | done | start-up s | window s | asset-steps/s | "
                 "assets/h (measured, start-up incl.) | assets/h (all prompts, modelled) | x shell loop | "
                 "peak MiB per process | rc |",
                 "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
                 "---: | ---: |"]
        for r in self.rows:
            best = r.get("modelled_per_hour") if r["part"].startswith("cell") else r["per_hour"]
            ratio = best / loop if loop and best and r["part"] != "sd" else None
            lines.append(f"| {r['part']} | {f(r.get('m'), 'd')} | {f(r.get('k'), 'd')} | "
                         f"{r['lines']} | {r['done']} | {f(r.get('startup_s'), '.1f')} | "
                         f"{f(r.get('window_s'), '.1f')} | {f(r.get('rate'), '.1f')} | "
                         f"{f(r['per_hour'] if not r['part'].startswith('cell') else None, '.0f')} | "
                         f"{f(r.get('modelled_per_hour'), '.0f')} | {f(ratio, '.2f')} | "
                         f"{f(r.get('peak_mem_mib'), '.0f')} | {r['rc']} |")
        if self.judge:
            j = self.judge
            lines += ["", "| judge, same prompts and seed | prompts | shape | colour | both |",
                      "| --- | ---: | ---: | ---: | ---: |"]
            for side in ("catalogue", "eval"):
                lines.append(f"| {side} | {j['prompts']} | {j[side]['shape_acc']:.1%} | "
                             f"{j[side]['colour_acc']:.1%} | {j[side]['both_acc']:.1%} |")
            lines.append(f"| difference (points) | | {j['diff_points']['shape_acc']:+.1f} | "
                         f"{j['diff_points']['colour_acc']:+.1f} | "
                         f"{j['diff_points']['both_acc']:+.1f} |")
        lines += [""] + self.skipped if self.skipped else []
        return "\n".join(lines) + "\n"

    def write(self) -> str:
        self.args.out.mkdir(parents=True, exist_ok=True)
        text = self.report()
        (self.args.out / "results.md").write_text(text)
        data = {"rows": self.rows, "judge": self.judge, "skipped": self.skipped,
                "prompts": len(self.prompts), "steps": self.args.steps,
                "window_s": self.args.window_s, "sd_steps": self.args.sd_steps,
                "overrides": self.args.override, "config": self.args.config}
        write_json(self.args.out / "results.json", data, indent=1)
        return text


def compare_judge(manifest: str, eval_rows: List[Dict]) -> Dict:
    """Mean judge accuracies of the catalogue's assets and of the evaluation's runs, on the
    prompts both judged (same config, seed 0)."""
    path = Path(manifest)
    made = {r["prompt"]: r["score"] for r in map(json.loads, path.read_text().splitlines())
            if r["status"] == "done" and r.get("score")} if path.exists() else {}
    evaluated = {r["prompt"]: r["ours"] for r in eval_rows if r.get("seed") == 0}
    shared = sorted(set(made) & set(evaluated))
    if not shared:
        return {}
    keys = ("shape_acc", "colour_acc", "both_acc")
    mean = lambda table: {k: sum(table[p][k] for p in shared) / len(shared) for k in keys}  # noqa: E731
    catalogue, evaluation = mean(made), mean(evaluated)
    return {"prompts": len(shared), "catalogue": catalogue, "eval": evaluation,
            "diff_points": {k: 100 * (catalogue[k] - evaluation[k]) for k in keys}}


def main(argv: Optional[Sequence[str]] = None) -> int:
    bench = Bench(parse_args(argv))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    bench.loop()
    bench.cells()
    e2e = bench.e2e()
    bench.evaluate(e2e)
    bench.sd()
    print(bench.write())
    return 0


if __name__ == "__main__":
    sys.exit(main())
