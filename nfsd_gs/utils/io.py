"""Files that are either whole or absent.

Every output of a run goes through :func:`atomic_write`: the bytes go to a
temporary file in the same folder, are flushed to disk, and the file is then
renamed over the target.  A crash or a kill at any moment leaves either the
previous version or the new one, never a truncated file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Union

from ..errors import NfsdError

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` (same suffix, for writers that want a file name);
    renamed over ``path`` when the block succeeds, deleted when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 is meant for secrets, not outputs
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; flushed to disk and renamed over
    ``path`` on success."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_text(path: PathLike, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def write_json(path: PathLike, data: Any, indent: int = 2, allow_nan: bool = True) -> None:
    """``data`` as indented JSON with a final newline (:func:`write_text`: atomically);
    ``allow_nan=False``: NaN or infinity is a ValueError (strict JSON, see :func:`finite_or_none`)."""
    write_text(path, json.dumps(data, indent=indent, allow_nan=allow_nan) + "\n")


def write_with(path: PathLike, writer: Callable[[IO[bytes]], None]) -> None:
    """Atomically write whatever ``writer(file_object)`` writes (torch.save, PIL, plyfile...)."""
    with atomic_write(path, "wb") as handle:
        writer(handle)


def finite_or_none(value: Any) -> Any:
    """NaN and infinities -> None, recursively through dicts and lists (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite_or_none(item) for item in value]
    return value


def append_line(path: PathLike, line: str) -> None:
    """Append one line and flush it to disk (metrics.jsonl); a torn last line is all a crash can cost."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line.rstrip("\n") + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def slugify(text: str, max_length: int = 48) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return slug[:max_length].rstrip("_") or "run"


def make_folder(path: PathLike) -> Path:
    """``path`` and its parents, made if missing; one NfsdError line if that is impossible
    (a file stands in the way, no permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NfsdError(f"cannot make the folder '{path}': {err.strerror or err}") from None
    return path


def create_run_dir(root: PathLike, name: str) -> Path:
    """A new folder ``root/name``, or ``root/name_001``, ``_002``... never an existing one."""
    root = make_folder(root)
    for index in range(10_000):
        candidate = root / (name if index == 0 else f"{name}_{index:03d}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name under {root} for '{name}'")
