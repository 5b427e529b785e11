"""Where a shared worker listens: the per-user runtime folder and the socket's path in it.

Both processes import this module (the server to connect, the worker to bind); standard library only.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile


def runtime_dir() -> str:
    """The per-user folder for worker sockets: $XDG_RUNTIME_DIR/diffill, else a temp folder per uid."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return os.path.join(base, "diffill")
    return os.path.join(tempfile.gettempdir(), f"diffill-{os.getuid()}")


def default_socket_path(model: str | None, device: str, dtype: str) -> str:
    """One shared worker per (model, device, dtype) per user."""
    key = json.dumps([model, device, dtype]).encode()
    return os.path.join(runtime_dir(), f"worker-{hashlib.sha256(key).hexdigest()[:12]}.sock")


class UnsafeSocketDir(Exception):
    """The socket's folder could be opened by another user."""


def ensure_private_dir(path: str) -> None:
    """Make sure only this user can reach sockets in `path`.

    The per-user default folder is created 0700 (and put back to 0700 if someone loosened it);
    any other folder must belong to this user and be writable by nobody else.
    """
    ours = os.path.abspath(path) == os.path.abspath(runtime_dir())
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeSocketDir(f"{path} is not a folder; remove it or choose another workerSocket")
    if info.st_uid != os.getuid():
        raise UnsafeSocketDir(f"{path} belongs to another user; choose a workerSocket in a folder of your own")
    if ours and info.st_mode & 0o077:
        os.chmod(path, 0o700)
    elif info.st_mode & 0o022:
        raise UnsafeSocketDir(
            f"{path} can be written by other users, who could replace the worker's socket; "
            f"run `chmod go-w {path}` or choose another workerSocket"
        )
