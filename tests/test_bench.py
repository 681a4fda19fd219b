"""The benchmark's CPU smoke runs: the step table and the whole-asset mode (issue 17)."""

from __future__ import annotations

import json

import pytest
import torch

from nfsd_gs.bench.__main__ import main
from nfsd_gs.bench.measure import process_age_s


def test_process_age_is_the_time_since_the_process_started():
    age = process_age_s()
    assert 0.0 < age < 24 * 3600  # started before this test, not before boot or in the future


def test_asset_mode_times_startup_loop_outputs_and_floor(tmp_path, capsys):
    out = tmp_path / "asset.json"
    assert main(["--asset", "--config", "tiny_test", "--prior", "random:tiny",
                 "--asset-steps", "3", "--floor-repeats", "1", "--json", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["steps"] == 3 and row["device"] == "cpu"
    assert row["loop_s"] > 0 and row["floor_total"] > 0 and row["startup_s"] > 0
    assert abs(row["step_ms"] - row["loop_s"] * 1e3 / 3) < 1e-6
    assert row["end_to_end_s"] >= row["startup_s"] + row["loop_s"]
    profile = row["startup_profile"]  # process start to the first step, by phase
    assert list(profile)[:2] == ["python, nfsd_gs imports", "config"]
    assert {"import diffusers, transformers", "build random weights", "text encoding",
            "representation", "gsplat kernels", "other"} <= set(profile)
    assert sum(profile.values()) == pytest.approx(row["startup_s"], abs=0.05)
    assert row["unet_rows"] <= row["unet_rows_all_branches"] == 3 * 2 * 3  # NFSD, 2 views
    out = capsys.readouterr().out
    assert "| encoder | steps | startup_s" in out and "| start-up phase | s | share |" in out


def test_save_prior_writes_a_loadable_folder(tmp_path):
    from nfsd_gs.config import PriorConfig
    from nfsd_gs.guidance import DiffusionPrior

    folder = tmp_path / "prior"
    assert main(["--save-prior", str(folder), "--prior", "random:tiny"]) == 0
    prior = DiffusionPrior.load(PriorConfig(model=str(folder), local_files_only=True),
                                torch.device("cpu"))
    assert prior.pixel_space and prior.num_train_timesteps == 1000


def test_variant_rows_and_the_table_against_a_baseline(tmp_path, capsys):
    """Issue 26's lever table: rows of a method with overrides, each against the baseline."""
    out = tmp_path / "levers.json"
    assert main(["--prior", "random:tiny", "--resolution", "32", "--views", "2", "--gaussians",
                 "100", "--methods", "sds", "--variant",
                 "vsd-1view=guidance.method=vsd,guidance.vsd.views=1", "--baseline", "sds",
                 "--steps", "1", "--warmup", "1", "--timed-steps", "1", "--floor-repeats", "1",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["variant"], r["method"], r["overrides"]) for r in rows] == [
        ("sds", "sds", []), ("vsd-1view", "vsd", ["guidance.vsd.views=1"])]
    assert rows[0]["vs_baseline"] == 1.0 and rows[1]["lora_ms"] > 0
    assert abs(rows[1]["vs_baseline"] - rows[1]["step_ms"] / rows[0]["step_ms"]) < 1e-9
    printed = capsys.readouterr().out
    assert "| variant | views | step ms | of which LoRA ms |" in printed and "| sds | 2 |" in printed


def test_a_variant_without_a_method_or_an_unknown_baseline_is_one_line(capsys):
    assert main(["--prior", "random:tiny", "--methods", "--variant", "x=guidance.vsd.views=1"]) == 2
    assert "must set guidance.method once" in capsys.readouterr().err
    assert main(["--prior", "random:tiny", "--methods", "sds", "--baseline", "nfsd"]) == 2
    assert "--baseline 'nfsd' is none of the rows (sds)" in capsys.readouterr().err


@pytest.mark.slow
def test_lever_mode_measures_each_lever_against_the_baseline(tmp_path, capsys):
    out = tmp_path / "levers.json"
    assert main(["--levers", "baseline", "negative-where-used", "defaults", "--config",
                 "tiny_test", "--prior", "random:tiny", "--asset-steps", "400",
                 "--sample-steps", "2", "--gaussians", "50", "--json", str(out),
                 "guidance.t_max=0.3", "guidance.t_max_end=0.3"]) == 0
    result = json.loads(out.read_text())
    rows = {row["lever"]: row for row in result["rows"]}
    assert list(rows) == ["baseline", "negative-where-used", "defaults"]
    assert rows["baseline"]["vs_baseline_s"] == 0.0
    assert "prior.encoder_layout=strided" in rows["baseline"]["overrides"]
    assert "prior.encoder_layout=strided" not in rows["defaults"]["overrides"]
    for row in rows.values():
        assert row["step_ms"] > 0 and row["startup_s"] > 0 and row["estimated"]
        assert row["end_to_end_s"] == pytest.approx(row["startup_s"] + row["loop_s"]
                                                    + row["outputs_s"])
    # 2 views x 3 branches; t <= 300 is below 200 most of the time: fewer rows expected
    assert rows["baseline"]["unet_rows_expected"] == 6.0
    assert 4.0 < rows["negative-where-used"]["unet_rows_expected"] < 5.0
    assert set(rows["baseline"]["unet_ms_by_rows"]) == {"6"}
    assert set(rows["negative-where-used"]["unet_ms_by_rows"]) == {"4", "6"}
    assert "load U-Net" not in result["startup_profile"]  # random weights: built, not loaded
    assert "| negative-where-used |" in capsys.readouterr().out


def test_an_unknown_lever_is_one_error_line(capsys):
    assert main(["--levers", "baseline", "warp-drive", "--prior", "random:tiny"]) == 2
    err = capsys.readouterr().err
    assert "lever 'warp-drive' is not one of baseline, direct-load" in err


def test_second_asset_rows_follow_each_compile_lever_measured_again():
    """``gpu_asset.sh`` measures the compile levers again in a new process (the cache filled):
    each gets a "(second asset)" row after its own, with the second process's first use and
    step time and the first's start-up and outputs."""
    from nfsd_gs.bench.asset import with_second_compile

    def row(lever, startup_s, first_use_s, step_ms):
        return {"lever": lever, "startup_s": startup_s, "first_use_s": first_use_s,
                "step_ms": step_ms, "outputs_s": 1.0,
                "end_to_end_s": startup_s + first_use_s + 10 * step_ms / 1e3 + 1.0}

    first = {"steps": 10, "rows": [row("baseline", 5.0, 1.0, 100.0),
                                   row("compile", 5.0, 30.0, 90.0),
                                   row("compile-unet", 5.0, 60.0, 80.0),
                                   row("defaults", 5.0, 1.0, 95.0)]}
    second = {"rows": [row("compile", 9.9, 4.0, 91.0), row("compile-unet", 9.9, 6.0, 79.0)]}
    rows = with_second_compile(first, second)["rows"]
    assert [r["lever"] for r in rows] == ["baseline", "compile", "compile (second asset)",
                                          "compile-unet", "compile-unet (second asset)",
                                          "defaults"]
    again = rows[4]
    assert again["loop_s"] == pytest.approx(6.0 + 10 * 0.079)
    assert again["end_to_end_s"] == pytest.approx(5.0 + 6.0 + 0.79 + 1.0)
    assert again["vs_baseline_s"] == pytest.approx(again["end_to_end_s"] - 8.0)  # 5 + 1 + 1 + 1
    assert with_second_compile(first, None)["rows"] == first["rows"]


def test_the_benchmark_prompt_is_one_the_prior_knows():
    """The bundled prior refuses words outside its world: the benchmark asks it for one of its
    objects, Stable Diffusion shapes for the classic prompt, and --prompt wins."""
    from nfsd_gs.bench.measure import BenchSettings

    assert BenchSettings(prior="bundled:shapes").prompt_of_prior == "a red cone"
    assert BenchSettings(prior="random:sd21-base").prompt_of_prior == "a DSLR photo of a corgi"
    assert BenchSettings(prior="bundled:shapes", prompt="a blue cube").prompt_of_prior == \
        "a blue cube"
