"""Where a process that runs other people's specs (``agent-etl serve``) may read local files.

Serve checks a spec's paths and ``${file:...}`` references when the spec is
registered (api/roots.py), but a path checked then can be swapped for a symlink
afterwards. So serve also confines the process: once ``confine`` is called,
every local file a source opens and every secret file a spec's ``${file:...}``
names is checked again at the moment it is opened, symlinks resolved. The CLI
never calls ``confine``: a local spec reads what its user can.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent_orchestrated_etl.exceptions import ConfigurationError


@dataclass(frozen=True)
class Roots:
    #: Directories local files of a spec may be read from (the data root, and those of serve's own specs).
    files: tuple[Path, ...]
    #: Directories a spec's ``${file:...}`` may read a secret from (AGENT_ETL_SECRETS_DIR and the data root).
    secrets: tuple[Path, ...]


_roots: Roots | None = None


def confine(*, files: Iterable[Path], secrets: Iterable[Path]) -> None:
    """From now on, this process opens local files and secret files only under these directories."""
    global _roots
    _roots = Roots(tuple(Path(p).resolve() for p in files), tuple(Path(p).resolve() for p in secrets))


def release() -> None:
    """Undo ``confine`` (serve's shutdown, and tests)."""
    global _roots
    _roots = None


def current() -> Roots | None:
    return _roots


def under(path: str | os.PathLike[str], roots: Iterable[Path]) -> bool:
    """Whether ``path``, symlinks resolved, is one of ``roots`` or under one."""
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(root) for root in roots)


def check_file(path: str, *, where: str) -> None:
    """Refuse to open a local file outside the confined roots; nothing when the process is not confined."""
    if _roots is None or under(path, _roots.files):
        return
    raise ConfigurationError(
        f"{path} resolves to {os.path.realpath(path)}, outside the server's data root",
        where=where,
        hint="a served spec reads only inside agent-etl serve --data-root: move the file there, or fix the link",
    )


def read_secret_file(path: Path) -> str:
    """A secret file's text; under ``confine``, refused unless the file opened lies under a secrets root.

    The check is on the file actually opened (its descriptor's path), so a link swapped in between
    a check and the read cannot lead elsewhere.
    """
    if _roots is None:
        return path.read_text(encoding="utf-8")
    with path.open("rb") as handle:
        opened = _opened_path(handle.fileno(), path)
        if not any(Path(opened).is_relative_to(root) for root in _roots.secrets):
            raise SecretOutsideRoots(opened, _roots.secrets)
        return handle.read().decode("utf-8")


class SecretOutsideRoots(PermissionError):
    def __init__(self, opened: str, roots: tuple[Path, ...]) -> None:
        super().__init__(f"resolves to {opened}, outside the secrets directories {', '.join(map(str, roots))}")


def _opened_path(fd: int, path: Path) -> str:
    proc = f"/proc/self/fd/{fd}"
    if os.path.exists(proc):  # Linux: the file the descriptor is open on, whatever the name points to now
        return os.readlink(proc)
    return os.path.realpath(path)
