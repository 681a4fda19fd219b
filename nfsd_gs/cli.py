"""What every command line of the package shares.

* Flags and dotted ``KEY=VALUE`` config overrides mix in any order
  (``--prompt X steps=0 --no-progress camera.batch_size=2``): argparse's
  ``parse_intermixed_args`` collects the overrides from wherever they stand.
* ``--threads N`` caps the CPU threads torch uses (``torch.set_num_threads``),
  for a machine shared with others; without it torch follows ``OMP_NUM_THREADS``,
  or uses every core.
* Ctrl-C while the command is still importing torch ends in one line, not a
  traceback (:func:`quiet_keyboard_interrupt`, installed before the imports).
* A positional word without ``=`` is no override: the one-line error says so and, when
  it follows a flag's value (``--prompt a red cone``), that the value needs quotes.

Usage in a command's ``parse_args``::

    parser = argparse.ArgumentParser(...)
    parser.add_argument("--prompt", ...)
    add_override_arguments(parser)
    return parse_command_line(parser, argv)
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

OVERRIDES_HELP = ("dotted config overrides, e.g. guidance.cfg_scale=7.5 steps=600; "
                  "they may stand before, between or after the flags")


def positive_int(text: str) -> int:
    """argparse ``type``: an integer >= 1 (argparse prints the one-line error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads for torch (default: OMP_NUM_THREADS if set, else "
                             "every core); set it on a shared machine")


def add_override_arguments(parser: argparse.ArgumentParser,
                           help: str = OVERRIDES_HELP) -> None:  # noqa: A002 -- argparse's name
    """``--threads`` and the positional ``KEY=VALUE`` overrides (``args.overrides``)."""
    add_threads_argument(parser)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=help)


def parse_command_line(parser: argparse.ArgumentParser,
                       argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse flags and overrides in any order, then apply ``--threads`` (if the parser has it).

    A word that is no ``KEY=VALUE`` override ends the command with one line (status 2)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_intermixed_args(argv)
    problem = bare_override_problem(argv, getattr(args, "overrides", None) or [])
    if problem:
        parser.exit(2, f"error: {problem}\n")
    set_threads(getattr(args, "threads", None))
    return args


def bare_override_problem(argv: Sequence[str], overrides: Sequence[str]) -> Optional[str]:
    """Why the first override without ``=`` is none, or None when every one has it.

    ``--prompt a red cone`` gives the prompt ``a`` and the overrides ``red`` and ``cone``:
    the words after a flag's value are its own, unquoted, and the message says how to
    quote them: ``--prompt "a red cone"``."""
    bare = [o for o in overrides if "=" not in o]
    if not bare:
        return None
    message = f"'{bare[0]}' is not a KEY=VALUE override (e.g. steps=600)"
    first = argv.index(bare[0])
    start = first
    while start > 0 and not argv[start - 1].startswith("-") and "=" not in argv[start - 1]:
        start -= 1  # back over the words before it, to the flag whose value they follow
    before = argv[start - 1] if start > 0 else ""
    if before.startswith("--") and "=" in before:  # --prompt=a red cone
        flag, value = before.split("=", 1)
        words = [value, *argv[start:first]]
    elif before.startswith("-") and start < first:  # --prompt a red cone
        flag, words = before, argv[start:first]
    else:  # no flag before it, or one that takes no value
        return message
    end = first
    while end < len(argv) and argv[end] in bare:  # the unquoted words that follow
        words.append(argv[end])
        end += 1
    if any(" " in word for word in words):  # the value was quoted: the word is another thing
        return message
    quoted = '"' + " ".join(words).replace('"', '\\"') + '"'
    return f"{message}: a {flag} of several words needs quotes, {flag} {quoted}"


def set_threads(threads: Optional[int]) -> None:
    """``torch.set_num_threads(threads)``; None leaves torch's default."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def fail(error: object) -> int:
    """Print ``error: <error>`` (one line, on stderr) and return the exit status 2 of bad input.

    For a command's ``main``: ``except NfsdError as err: return fail(err)``."""
    print(f"error: {error}", file=sys.stderr)
    return 2


def quiet_keyboard_interrupt(message: str = "interrupted: before the run started; "
                                            "nothing was written") -> None:
    """An uncaught KeyboardInterrupt prints ``message`` (one line) instead of a traceback.

    For ``python -m`` entry points, called at the top of the module before its heavy
    imports (torch takes seconds to import); other exceptions keep Python's hook.  The
    process still ends as interrupted by SIGINT (status 130 in a shell), as Python does.
    """
    def hook(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            print(message, file=sys.stderr, flush=True)
        else:
            sys.__excepthook__(kind, value, traceback)

    sys.excepthook = hook


def run_console_script(module: str) -> int:
    """What an installed console script runs: Ctrl-C while ``module`` (and torch) import
    ends in one line, as it does for ``python -m``; then the module's ``main()``."""
    import importlib

    quiet_keyboard_interrupt()
    return importlib.import_module(module).main()


#: The console scripts of setup.py (``nfsd-gs-<name>``) and the command module each runs.
CONSOLE_SCRIPTS = {
    "train": "nfsd_gs.train.__main__",
    "view": "nfsd_gs.view.__main__",
    "render": "nfsd_gs.render.__main__",
    "export": "nfsd_gs.export.__main__",
    "batch": "nfsd_gs.batch.__main__",
}


# Each imports its command lazily (torch takes seconds): Ctrl-C before then is one line.
def train() -> int:
    return run_console_script(CONSOLE_SCRIPTS["train"])


def view() -> int:
    return run_console_script(CONSOLE_SCRIPTS["view"])


def render() -> int:
    return run_console_script(CONSOLE_SCRIPTS["render"])


def export() -> int:
    return run_console_script(CONSOLE_SCRIPTS["export"])


def batch() -> int:
    return run_console_script(CONSOLE_SCRIPTS["batch"])
