"""The README's set-up is what CI runs (issue 15, item 8)."""

import json
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
    for command in cpu + browser:  # every line, the apt-get ones too (issue 27, item 3)
        assert runs(command, ci_lines), command


def test_the_readme_browser_setup_is_complete():
    """Issue 27: `apt-get install chromium nodejs npm` failed as written: no update, no -y,
    and Debian's npm conflicts with a nodejs from another repository."""
    _, _, browser = setup_blocks()
    apt = [shlex.split(line) for line in browser if "apt-get" in line]
    assert apt and all("-y" in words for words in apt if "install" in words)
    first_install = next(i for i, words in enumerate(apt) if "install" in words)
    assert any("update" in words for words in apt[:first_install + 1])
    assert apt[first_install].index("update") < apt[first_install].index("install")
    npm = next(words for words in apt if "npm" in words[words.index("install"):])
    assert npm[:3] == ["command", "-v", "npm"], "Debian's npm only where there is no npm"


def test_cuda_line_does_not_repin_torch():
    _, cuda, _ = setup_blocks()
    assert cuda == ['pip install -e ".[dev]"']
    setup = (ROOT / "setup.py").read_text()
    assert '"torch>=2.4"' in setup  # a range any recent CUDA build satisfies


# ----------------------------------------------------------------------------- prompts (issue 27)

README = ROOT / "README.md"
#: A command that runs another prior than the shipped one: its prompt is not the bundled world's.
OTHER_PRIOR = re.compile(r"--config\s+(?!default\b)\S+|prior\.model=(?!bundled:shapes)")


def readme_prompts():
    """Every prompt the README offers for the shipped prior: the ``--prompt "..."`` of its
    commands (but those of another preset or prior), the ``"prompt"`` of its JSON lines, and
    every `backticked` text that names an object of the bundled world."""
    from nfsd_gs.errors import PromptError
    from nfsd_gs.shapeworld import parse_prompt

    text = README.read_text()
    found = []
    for line in text.splitlines():
        if not OTHER_PRIOR.search(line):
            found += re.findall(r'--prompt\s+"([^"]+)"', line)
        found += re.findall(r'"prompt":\s*"([^"]+)"', line)
    for span in re.findall(r"`([^`\n]+)`", text):
        candidate = span.strip().strip('"')
        try:
            parse_prompt(candidate)  # the whole world: both splits
        except PromptError:
            continue
        found.append(candidate)
    return sorted(set(found))


def test_the_readme_prompts_are_accepted_by_the_shipped_prior():
    import torch

    from nfsd_gs.config import PriorConfig
    from nfsd_gs.errors import PromptError
    from nfsd_gs.guidance.prior import DiffusionPrior

    prompts = readme_prompts()
    assert {"a red cone", "an orange pyramid", "A Red Cone!"} <= set(prompts), prompts
    prior = DiffusionPrior.load(PriorConfig(model="bundled:shapes"), torch.device("cpu"))
    refused = {}
    for prompt in prompts:
        try:
            prior.check_prompt(prompt)
        except PromptError as err:
            refused[prompt] = str(err)
    assert not refused, refused


def test_the_readme_words_are_the_shipped_priors():
    """The README's list of words is what `python -m nfsd_gs.shapeworld words` reads off the
    shipped prior's prior_info.json, whose vocabulary is its tokenizer's."""
    from nfsd_gs.shapeworld import SHAPES_PRIOR_DIR, prompt_guide, shipped_prior_splits
    from nfsd_gs.utils.tokenizer import SPECIAL_TOKENS

    text = README.read_text()
    block = re.search(r"<!-- prompt-words:.*?-->\n(.*?)\n<!-- /prompt-words -->", text, re.S)
    assert block, "README lost its prompt-words block"
    assert block.group(1) == prompt_guide(shipped_prior_splits()), \
        "run `python -m nfsd_gs.shapeworld words` and paste its output into the README"
    info = json.loads((SHAPES_PRIOR_DIR / "prior_info.json").read_text())
    tokenizer = json.loads((SHAPES_PRIOR_DIR / "tokenizer" / "tokenizer.json").read_text())
    assert sorted(set(tokenizer["model"]["vocab"]) - set(SPECIAL_TOKENS)) == info["vocabulary"]


# ----------------------------------------------------------------------------- slips (issue 27)


def test_the_readme_states_the_default_timestep_schedule():
    """Issue 27: the README said t is annealed to [0.02, 0.5]; the default config uses 0.3."""
    from nfsd_gs.config import load_config

    text = " ".join(README.read_text().split())
    found = re.search(r"`t ~ U\[([\d.]+), ([\d.]+)\]·T`, annealed to `\[([\d.]+), ([\d.]+)\]` "
                      r"over the first (\d+) % of the run", text)
    assert found, "the README lost its sentence on the timestep schedule"
    g = load_config("default").guidance
    assert [float(v) for v in found.groups()[:4]] == [g.t_min, g.t_max, g.t_min, g.t_max_end]
    assert g.t_anneal_start == 0 and int(found.group(5)) == round(100 * g.t_anneal_end)


def test_the_readme_links_files_that_exist():
    """Issue 27: the README pointed to a DESIGN.md that is not in the repository."""
    text = README.read_text()
    linked = re.findall(r"\]\((?!https?:|#)([^)#\s]+)", text)
    named = re.findall(r"`((?:[\w.-]+/)+[\w.-]+\.md|[A-Z][A-Z_]+\.md)`", text)  # repo docs
    assert "docs/ARCHITECTURE.md" in linked
    missing = [path for path in {*linked, *named} if not (ROOT / path).exists()]
    assert not missing, missing
