"""Where a shared worker listens, and how both processes reach its socket without trusting a path.

Both processes import this module (the server to connect, the worker to bind); standard library only.

The threat is another local user who can write some folder on the way to the socket: between a
check of a path and its use they could swap a folder and make the worker bind, or the server
connect, somewhere they control. So, as OpenSSH and systemd do:

- A folder is opened by walking from `/`, one component at a time, each relative to the folder
  opened before it (`O_DIRECTORY | O_NOFOLLOW`), and each opened folder is checked by `fstat`
  (what was opened, not what a path names now): it must belong to root or to this user, and no one
  else may write it unless it has the sticky bit (like /tmp, where others cannot rename or delete
  what is not theirs). A symbolic link on the way is followed only when it belongs to root or to
  this user, and its target is walked and checked the same way. The socket's own folder must
  belong to this user and be writable by nobody else. (Inside a user namespace, a Flatpak or a
  rootless container, the host's root shows as the unmapped uid, which counts as root there.)
- The socket is then bound, looked at and connected to through that opened folder
  (`/proc/self/fd/N/NAME`, which the kernel resolves to the opened folder itself, wherever it
  has been moved since), never again by its path.
- Nothing is removed there unless it is a socket of this user; the lock and log files live in
  this user's private runtime folder, never next to a socket path someone chose.
- Each side checks the other's uid with SO_PEERCRED (LOCAL_PEERCRED on BSDs and macOS) before
  it sends anything.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import struct
import tempfile

MAX_LINKS = 40
_DIR_FLAGS = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
              | getattr(os, "O_CLOEXEC", 0))  # (getattr: the module must import everywhere the server runs)


class UnsafeSocketDir(Exception):
    """The socket's folder, or a folder on the way to it, could be changed by another user."""


class UnsafeSocket(Exception):
    """What is at the socket's path is not a socket of this user, or its peer is another user."""


# ---- where -------------------------------------------------------------------------------------

def runtime_dir() -> str:
    """The per-user folder for worker sockets, locks and logs: $XDG_RUNTIME_DIR/diffill, else a
    temp folder per uid. An unsafe $XDG_RUNTIME_DIR is refused when the folder is opened, not
    silently replaced."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base) and os.path.lexists(base):
        return os.path.join(base, "diffill")
    return os.path.join(tempfile.gettempdir(), f"diffill-{os.getuid()}")


def default_socket_path(model: str | None, device: str, dtype: str) -> str:
    """One shared worker per (model, device, dtype) per user."""
    key = json.dumps([model, device, dtype]).encode()
    return os.path.join(runtime_dir(), f"worker-{hashlib.sha256(key).hexdigest()[:12]}.sock")


def _state_name(socket_path: str) -> str:
    """The base name of a socket's lock and log in the runtime folder."""
    path = os.path.abspath(socket_path)
    if os.path.dirname(path) == os.path.abspath(runtime_dir()):
        return os.path.basename(path)
    return f"socket-{hashlib.sha256(path.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


def lock_name(socket_path: str) -> str:
    return _state_name(socket_path) + ".lock"


def log_name(socket_path: str) -> str:
    return _state_name(socket_path) + ".log"


def lock_path(socket_path: str) -> str:
    """The worker's lock for `socket_path`: in the private runtime folder, holding its pid."""
    return os.path.join(runtime_dir(), lock_name(socket_path))


def log_path(socket_path: str) -> str:
    """The shared worker's log for `socket_path`: in the private runtime folder."""
    return os.path.join(runtime_dir(), log_name(socket_path))


# ---- checked folders ---------------------------------------------------------------------------

def _describe_mode(mode: int) -> str:
    return f"mode {stat.S_IMODE(mode):04o}"


def _unmapped_uid() -> int | None:
    """The uid that files of users outside this user namespace show (in a Flatpak or rootless
    container, the host's root owns / and /run as this one), or None in the initial namespace."""
    try:
        with open("/proc/self/uid_map") as f:
            identity = f.read().split() == ["0", "0", "4294967295"]
        if identity:
            return None
        with open("/proc/sys/kernel/overflowuid") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def trusted_owners() -> set[int]:
    """Who may own a folder on the way to a socket: root, this user, and in a user namespace the
    unmapped owner (the host's root as the sandbox sees it; nobody inside can write its folders)."""
    owners = {0, os.getuid()}
    unmapped = _unmapped_uid()
    if unmapped is not None:
        owners.add(unmapped)
    return owners


def _check_on_the_way(info: os.stat_result, where: str, target: str) -> None:
    if info.st_uid not in trusted_owners():
        raise UnsafeSocketDir(
            f"{where} (on the way to {target}) belongs to another user (uid {info.st_uid}), who could "
            f"replace the worker's socket; choose a workerSocket in a folder of your own")
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise UnsafeSocketDir(
            f"{where} (on the way to {target}) can be written by other users ({_describe_mode(info.st_mode)}, "
            f"no sticky bit), who could replace the worker's socket; run `chmod go-w {where}` "
            f"or choose another workerSocket")


def _check_final(fd: int, info: os.stat_result, where: str, fix_mode: bool) -> None:
    if info.st_uid != os.getuid():
        raise UnsafeSocketDir(f"{where} belongs to another user (uid {info.st_uid}); "
                              f"choose a workerSocket in a folder of your own")
    if fix_mode and info.st_mode & 0o077:
        os.fchmod(fd, 0o700)  # our own folder, loosened by someone: put it back
    elif info.st_mode & 0o022:
        raise UnsafeSocketDir(
            f"{where} can be written by other users ({_describe_mode(info.st_mode)}), who could replace "
            f"the worker's socket; run `chmod go-w {where}` or choose another workerSocket")


def open_dir(path: str, *, create: bool = False, fix_mode: bool = False) -> int:
    """An O_DIRECTORY descriptor of `path`, reached and checked as the module docstring says.

    create: make missing folders (0700). fix_mode: `path` is diffill's own folder; put it back to
    0700 if it was loosened. Raises UnsafeSocketDir with what is wrong and what to do."""
    target = os.path.abspath(path)
    pending = [c for c in target.split("/") if c]
    where = "/"
    fd = os.open("/", _DIR_FLAGS)
    links = 0
    try:
        _check_on_the_way(os.fstat(fd), "/", target)
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise UnsafeSocketDir(f"{os.path.join(where, name)} does not exist") from None
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            here = os.path.normpath(os.path.join(where, name))
            if stat.S_ISLNK(info.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise UnsafeSocketDir(f"too many symbolic links on the way to {target}")
                if info.st_uid not in trusted_owners():
                    raise UnsafeSocketDir(
                        f"{here} (on the way to {target}) is a symbolic link of another user "
                        f"(uid {info.st_uid}); choose a workerSocket in a folder of your own")
                link = os.readlink(name, dir_fd=fd)
                parts = [c for c in link.split("/") if c]
                if link.startswith("/"):
                    os.close(fd)
                    fd, where = os.open("/", _DIR_FLAGS), "/"
                    _check_on_the_way(os.fstat(fd), "/", target)
                pending[:0] = parts
                continue
            if not stat.S_ISDIR(info.st_mode):
                raise UnsafeSocketDir(f"{here} is not a folder; remove it or choose another workerSocket")
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:  # replaced by a link or a file since the look: someone is racing us
                raise UnsafeSocketDir(f"{here} changed while it was opened ({exc.strerror}); "
                                      f"someone may be tampering with it") from None
            os.close(fd)
            fd, where = child, here
            if pending:
                _check_on_the_way(os.fstat(fd), where, target)
        _check_final(fd, os.fstat(fd), where, fix_mode)
        return fd
    except BaseException:
        os.close(fd)
        raise


def ensure_private_dir(path: str) -> None:
    """Create `path` if needed and make sure only this user can reach sockets in it (see open_dir).

    The per-user default folder is put back to 0700 if someone loosened it; any other folder must
    belong to this user and be writable by nobody else."""
    ours = os.path.abspath(path) == os.path.abspath(runtime_dir())
    os.close(open_dir(path, create=True, fix_mode=ours))


def open_runtime_dir() -> int:
    """The private runtime folder (created 0700 when missing), opened and checked."""
    return open_dir(runtime_dir(), create=True, fix_mode=True)


# ---- the socket in its folder ------------------------------------------------------------------

def _fd_path(dir_fd: int, name: str) -> str | None:
    """A path that the kernel resolves through the opened folder itself, when there is one."""
    path = f"/proc/self/fd/{dir_fd}/{name}"
    if len(path.encode()) < 100 and os.path.isdir(f"/proc/self/fd/{dir_fd}"):
        return path
    return None


class SocketPlace:
    """A socket's folder, opened and checked once, and the socket's name in it.

    Every later operation goes through the opened folder, so moving or swapping folders on the way
    afterwards changes nothing. Without /proc (macOS, BSDs), the socket is bound and reached by its
    path after the whole chain was checked: no other user can change anything on that chain."""

    def __init__(self, path: str, *, create: bool = True):
        self.path = os.path.abspath(os.path.expanduser(path))
        folder, self.name = os.path.split(self.path)
        if not self.name:
            raise UnsafeSocketDir(f"{path} names a folder, not a socket")
        self.own_folder = folder == os.path.abspath(runtime_dir())
        self.dir_fd = open_dir(folder, create=create, fix_mode=self.own_folder)

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    def __enter__(self) -> "SocketPlace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def address(self) -> str:
        return _fd_path(self.dir_fd, self.name) or self.path

    def lstat(self) -> os.stat_result | None:
        """What is at the socket's name now (not following a link), or None."""
        try:
            return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def folder_gone(self) -> bool:
        """Whether the opened folder has been removed (its path may hold a new one by now)."""
        try:
            return os.fstat(self.dir_fd).st_nlink == 0
        except OSError:
            return True

    def check_socket(self) -> os.stat_result | None:
        """The socket's stat when a socket of this user is there, None when nothing is there.

        Raises UnsafeSocket when something else is there."""
        info = self.lstat()
        if info is None:
            return None
        if not stat.S_ISSOCK(info.st_mode):
            raise UnsafeSocket(f"{self.path} exists and is not a socket; diffill leaves it alone: "
                               f"remove it or choose another workerSocket")
        if info.st_uid != os.getuid():
            raise UnsafeSocket(f"the socket {self.path} belongs to another user (uid {info.st_uid}); "
                               f"refusing to use it")
        return info

    def remove_stale(self, left_by: tuple[int, ...] | None) -> bool:
        """Remove the socket a dead worker left at the name (the caller holds the lock): in diffill's
        own runtime folder any socket of this user, elsewhere only the one whose identity (see
        `identity`) the last worker recorded in the lock. Never anything else."""
        info = self.check_socket()
        if info is None:
            return False
        if not self.own_folder and identity(info) != left_by:
            raise UnsafeSocket(f"{self.path} is a socket that no diffill worker left there; diffill leaves it "
                               f"alone: remove it or choose another workerSocket")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name, dir_fd=self.dir_fd)
        return True

    def remove_if(self, info: os.stat_result) -> None:
        """Remove the socket at the name only if it is still the one described by `info`."""
        now = self.lstat()
        if now is not None and (now.st_ino, now.st_dev) == (info.st_ino, info.st_dev):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.name, dir_fd=self.dir_fd)

    def bind(self, sock: socket.socket) -> os.stat_result:
        """Bind `sock` at the name, 0600 from the start; the stat of the new socket file."""
        old_umask = os.umask(0o177)
        try:
            sock.bind(self.address)
        finally:
            os.umask(old_umask)
        info = self.check_socket()
        if info is None:
            raise UnsafeSocket(f"the socket {self.path} vanished right after it was bound")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.name, 0o600, dir_fd=self.dir_fd)
            info = self.check_socket() or info
        return info

    def listen(self, backlog: int = 64) -> tuple[socket.socket, os.stat_result]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            info = self.bind(sock)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock, info


def identity(info: os.stat_result) -> tuple[int, int, int]:
    """What tells one socket file from another at the same name across processes (an inode number
    alone may be reused once the file is gone)."""
    return info.st_ino, info.st_dev, info.st_ctime_ns


# ---- the other side ----------------------------------------------------------------------------

def peer_credentials(sock: socket.socket) -> tuple[int | None, int]:
    """(pid or None, uid) of the process at the other end of a connected Unix socket.

    Raises OSError when the platform cannot say (then the connection must not be trusted)."""
    if hasattr(socket, "SO_PEERCRED"):
        size = struct.calcsize("3i")
        pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size))
        return pid, uid
    if hasattr(socket, "LOCAL_PEERCRED"):  # struct xucred: u_int cr_version; uid_t cr_uid; ...
        data = sock.getsockopt(getattr(socket, "SOL_LOCAL", 0), socket.LOCAL_PEERCRED, 76)
        _, uid = struct.unpack_from("=II", data)
        return None, uid
    raise OSError("this platform cannot tell who is at the other end of a Unix socket")


def check_peer(sock: socket.socket, what: str) -> int | None:
    """The peer's pid (None when unknown) if it runs as this user; else UnsafeSocket."""
    try:
        pid, uid = peer_credentials(sock)
    except OSError as exc:
        raise UnsafeSocket(f"cannot check who serves {what}: {exc}") from None
    if uid != os.getuid():
        raise UnsafeSocket(f"{what} is served by another user (uid {uid}), not by you; refusing to use it")
    return pid
