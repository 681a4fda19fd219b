"""The README's set-up is what CI runs (issue 15, item 8)."""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_blocks():
    """The code blocks of the README's "Set-up" section, each a list of command lines."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Set-up"):readme.index("Then, the main job")]
    return [block.strip().splitlines() for block in re.findall(r"```\n(.*?)```", section, re.S)]


def runs(command: str, ci_lines) -> bool:
    """Whether some line of .ci/run runs ``command`` (its words in order, extra flags allowed)."""
    words = shlex.split(command)
    for line in ci_lines:
        remaining = iter(shlex.split(line, comments=True) if line.strip() else [])
        if all(word in remaining for word in words):
            return True
    return False


def test_ci_runs_the_readme_setup_verbatim():
    cpu, cuda, browser = setup_blocks()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert cpu == ['pip install "torch==2.13.0" -e ".[dev]"', "python -m pytest -q"]
    npm = [line for line in browser if line.startswith("npm ")]
    assert npm == ["npm ci --prefix viewer/web"]  # the Spark check's own install
    for command in cpu + npm:
        assert runs(command, ci_lines), command
    apt_packages = shlex.split(browser[0])[2:]  # apt-get install <packages>
    ci = "\n".join(ci_lines)
    assert all(package in ci for package in apt_packages)


def test_cuda_line_does_not_repin_torch():
    _, cuda, _ = setup_blocks()
    assert cuda == ['pip install -e ".[dev]"']
    setup = (ROOT / "setup.py").read_text()
    assert '"torch>=2.4"' in setup  # a range any recent CUDA build satisfies
