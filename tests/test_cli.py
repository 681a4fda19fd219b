"""The command lines: flags and overrides in any order, --threads (issue 15, items 1 and 8)."""

import subprocess
import sys

import pytest
import torch

from nfsd_gs.batch import __main__ as batch_cli
from nfsd_gs.bench import __main__ as bench
from nfsd_gs.train import __main__ as train
from nfsd_gs.eval import __main__ as evaluation
from nfsd_gs.render import __main__ as render_cli
from nfsd_gs.score import __main__ as score_cli

#: Every command that takes KEY=VALUE overrides, with one of its own flags.
OVERRIDE_COMMANDS = {
    "train": (train.parse_args, ["--prompt", "a red cone"], "prompt", "a red cone"),
    "eval": (evaluation.parse_args, ["--limit", "2"], "limit", 2),
    "bench": (bench.parse_args, ["--steps", "3"], "steps", 3),
}


@pytest.mark.parametrize("command", sorted(OVERRIDE_COMMANDS))
def test_flags_and_overrides_mix_in_any_order(command):
    parse_args, flag, name, value = OVERRIDE_COMMANDS[command]
    orders = [
        ["steps=0", *flag, "camera.batch_size=2"],
        [*flag, "steps=0", "camera.batch_size=2"],
        ["steps=0", "camera.batch_size=2", *flag],
    ]
    for argv in orders:
        args = parse_args(argv)
        assert args.overrides == ["steps=0", "camera.batch_size=2"], argv
        assert getattr(args, name) == value, argv


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_issue_command_line_trains(tmp_path, capsys):
    """``--prompt X steps=0 --no-progress camera.batch_size=2`` failed with argparse's
    'unrecognized arguments: camera.batch_size=2'."""
    assert train.main(["--config", "tiny_test", "--prompt", "a red cube", "steps=1",
                       "--no-progress", "camera.batch_size=2", "--output-root", str(tmp_path),
                       "output.name=run"]) == 0
    assert "camera:\n  batch_size: 2" in (tmp_path / "run" / "config.yaml").read_text()


@pytest.mark.parametrize("parse_args", [train.parse_args, evaluation.parse_args, bench.parse_args,
                                        lambda argv: render_cli.parse_args(["model.ply", *argv]),
                                        lambda argv: batch_cli.parse_args(["prompts.txt", *argv]),
                                        lambda argv: score_cli.parse_args(["run", *argv])])
def test_threads_flag_sets_torch_threads(parse_args, restore_threads):
    torch.set_num_threads(2)
    parse_args(["--threads", "1"])
    assert torch.get_num_threads() == 1


def test_bad_thread_count_is_one_line():
    result = subprocess.run([sys.executable, "-m", "nfsd_gs.render", "model.ply", "--threads", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("argument --threads: 0 must be at least 1")


def test_score_refuses_zero_views_in_one_line(tmp_path, capsys):
    from nfsd_gs.score import __main__ as score

    with pytest.raises(SystemExit) as exit_info:
        score.main([str(tmp_path), "--views", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "argument --views: 0 must be at least 1")


# --------------------------------------------------------------------------- the end of a run


def test_a_finished_run_says_what_it_made_and_how_to_look_at_it(tmp_path, capsys):
    """Bundled prior: files, time, the judge's verdict and the viewer command (was: one line
    'wrote .../model.ply')."""
    assert train.main(["--prompt", "a red cone", "--no-progress", "steps=2", "--threads", "1",
                       "camera.batch_size=1", "output.turntable_frames=2",
                       "output.turntable_resolution=16", "--output-root", str(tmp_path),
                       "output.name=run"]) == 0
    run_dir = tmp_path / "run"
    lines = capsys.readouterr().err.strip().splitlines()
    end = lines[lines.index(next(l for l in lines if l.startswith("done in "))):]
    assert end[0].startswith("done in ") and end[0].endswith(f": {run_dir}")
    assert end[1].split() == ["model", str(run_dir / "model.ply")]
    assert end[2].split() == ["turntable", str(run_dir / "turntable.mp4")]
    assert end[3].split()[0] == "judge" and "/8 views look like" in end[3]
    assert end[4].split(None, 3)[-1] == f"python -m nfsd_gs.view {run_dir / 'model.ply'}"
    assert len(end) == 5


def test_no_judge_for_other_priors(tmp_path, capsys):
    assert train.main(["--config", "tiny_test", "--prompt", "a red cube", "--no-progress",
                       "steps=1", "--output-root", str(tmp_path)]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("done in ") for line in lines)
    assert not any(line.split()[:1] == ["judge"] for line in lines)


def test_the_end_of_a_run_lists_its_mesh(tmp_path, capsys):
    """output.mesh=true writes mesh.glb, which the list left out."""
    from types import SimpleNamespace

    for name in ("model.ply", "mesh.glb", "turntable.mp4"):
        (tmp_path / name).write_bytes(b"")
    run = SimpleNamespace(config=SimpleNamespace(prior=SimpleNamespace(model="random:tiny")))
    train.report_finished(run, tmp_path, tmp_path / "model.ply", 1.0)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["model", str(tmp_path / "model.ply")], ["mesh", str(tmp_path / "mesh.glb")],
        ["turntable", str(tmp_path / "turntable.mp4")]]


@pytest.mark.parametrize("representation, count_name", [
    ("gaussians", "gaussians"), ("nerf", "occupied_cells")])
def test_progress_bar_names_its_count(tmp_path, capsys, representation, count_name):
    """The NeRF's bar showed 'n=0': each representation names what it counts."""
    nerf = ["nerf.num_levels=2", "nerf.log2_table_size=8", "nerf.max_resolution=16",
            "nerf.hidden_dim=8", "nerf.samples_per_ray=8", "nerf.occupancy_resolution=8",
            "nerf.mesh_resolution=16", "nerf.export_gaussians=false"]
    assert train.main(["--config", "tiny_test", "--prompt", "a red cube", "steps=2",
                       f"representation={representation}", *nerf,
                       "--output-root", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"{count_name}=" in err and " n=" not in err


@pytest.mark.parametrize("argv, hint", [
    (["--prompt", "a", "red", "cone"], ' a --prompt of several words needs quotes, --prompt "a red cone"'),
    (["steps=3", "-p", "a", "red", "cone", "--no-progress"],
     ' a -p of several words needs quotes, -p "a red cone"'),
    (["--prompt=an", "orange", "pyramid"],
     ' a --prompt of several words needs quotes, --prompt "an orange pyramid"'),
    (["--prompt", "a red cone", "red"], ""),  # quoted: 'red' is something else
    (["--no-progress", "red"], ""),
])
def test_an_unquoted_prompt_is_one_line_that_says_to_quote_it(argv, hint, capsys):
    """Issue 27: `--prompt a red cone` said `override 'red' is not of the form key=value`."""
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    bare = next(a for a in argv[1:] if a in ("red", "orange"))
    assert err == f"error: '{bare}' is not a KEY=VALUE override (e.g. steps=600)" + (
        f":{hint}" if hint else "")


def test_an_unquoted_prompt_list_of_the_evaluation_says_to_quote_it(capsys):
    with pytest.raises(SystemExit):
        evaluation.parse_args(["--prompts", "a", "red", "cone,a", "blue", "cube"])
    assert capsys.readouterr().err.strip().endswith('--prompts "a red cone,a blue cube"')
