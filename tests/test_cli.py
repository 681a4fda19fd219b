"""The command lines: flags and overrides in any order, --threads (issue 15, items 1 and 8)."""

import subprocess
import sys

import pytest
import torch

from nfsd_gs import bench, eval as evaluation
from nfsd_gs.render import __main__ as render_cli

#: Every command that takes KEY=VALUE overrides, with one of its own flags.
OVERRIDE_COMMANDS = {
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


@pytest.mark.parametrize("parse_args", [evaluation.parse_args, bench.parse_args,
                                        lambda argv: render_cli.parse_args(["model.ply", *argv])])
def test_threads_flag_sets_torch_threads(parse_args, restore_threads):
    torch.set_num_threads(2)
    parse_args(["--threads", "1"])
    assert torch.get_num_threads() == 1


def test_bad_thread_count_is_one_line():
    result = subprocess.run([sys.executable, "-m", "nfsd_gs.render", "model.ply", "--threads", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("argument --threads: 0 must be at least 1")
