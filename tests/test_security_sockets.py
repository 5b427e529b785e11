"""The shared worker's socket against another local user: folder checks, fd-relative binding, the
peer's uid, and a workerSocket that names something that is not a socket.

Tests that need a second user run as root (they create one with useradd) and skip otherwise.
"""
import asyncio
import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from diffill.lsp.server.settings import Settings
from diffill.lsp.server.worker_client import WorkerClient, WorkerError
from diffill.lsp.wire import sockets
from server_harness import daemon_pid, editor, fixed_answers, socket_dir  # noqa: F401

WORKER = [sys.executable, "-m", "diffill.lsp.cli", "worker"]
OTHER_USER = "diffill-other"
SYSTEM_PYTHON = "/usr/bin/python3"  # the other user cannot reach this checkout's interpreter under /root


@pytest.fixture
def loose_base():
    """A folder anyone may write (0777, no sticky bit), as a careless XDG_RUNTIME_DIR might be."""
    d = tempfile.mkdtemp(prefix="dfl-", dir="/tmp")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def other_user():
    """(uid, gid) of a second local user, created when missing; skips unless running as root."""
    if os.getuid() != 0:
        pytest.skip("needs root to create and act as a second user")
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"needs {SYSTEM_PYTHON} for the second user's processes")
    import pwd
    try:
        entry = pwd.getpwnam(OTHER_USER)
    except KeyError:
        if shutil.which("useradd") is None:
            pytest.skip("needs useradd to create a second user")
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(OTHER_USER)
    return entry.pw_uid, entry.pw_gid


# A listener run as the other user: binds PATH (world-connectable), prints READY, and writes to
# REPORT how many bytes each connection sent it, while it answers like a worker would.
LISTENER = r"""
import os, socket, struct, sys, json
path, report = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path); os.chmod(path, 0o777); s.listen(8)
print("READY", flush=True)
while True:
    c, _ = s.accept()
    body = json.dumps({"op": "status", "state": "ready", "message": "attacker", "version": 1}).encode()
    try:
        c.sendall(struct.pack(">I", len(body)) + body)
        c.settimeout(1.0)
        got = b""
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            pass
    except OSError:
        got = b""
    with open(report, "a") as f:
        f.write(f"{len(got)}\n")
    c.close()
"""


@contextlib.contextmanager
def listener_as(user, path: str, report: str):
    uid, gid = user
    proc = subprocess.Popen([SYSTEM_PYTHON, "-c", LISTENER, path, report], user=uid, group=gid, extra_groups=[],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.stderr.read()
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def bytes_received(report: str) -> list[int]:
    try:
        with open(report) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def shared_settings(path: str) -> Settings:
    return Settings(worker_mode="shared", worker_socket=path, preload=False)


# ---- the chain of folders ----------------------------------------------------------------------

def test_a_runtime_folder_anyone_can_write_without_the_sticky_bit_is_refused(loose_base, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", loose_base)
    path = sockets.default_socket_path("m", "cpu", "auto")
    with pytest.raises(sockets.UnsafeSocketDir, match="other users.*no sticky bit.*chmod go-w"):
        sockets.SocketPlace(path)
    assert not os.path.exists(os.path.join(loose_base, "diffill"))  # nothing was even created there
    out = subprocess.run(WORKER + ["--socket", path], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "XDG_RUNTIME_DIR": loose_base})
    assert out.returncode == 2 and "other users" in out.stderr


def test_every_folder_on_the_way_is_checked_not_only_the_last(socket_dir):
    loose = os.path.join(socket_dir, "loose")
    os.mkdir(loose)
    os.chmod(loose, 0o777)
    inner = os.path.join(loose, "private")
    os.mkdir(inner, 0o700)  # the socket's own folder is fine; the one above it is not
    with pytest.raises(sockets.UnsafeSocketDir, match="on the way to"):
        sockets.SocketPlace(os.path.join(inner, "w.sock"))
    sticky = os.path.join(socket_dir, "sticky")
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)  # like /tmp: others cannot rename or remove what is ours
    with sockets.SocketPlace(os.path.join(sticky, "mine", "w.sock")) as place:
        assert stat.S_IMODE(os.fstat(place.dir_fd).st_mode) == 0o700


def test_our_own_symlink_to_our_own_folder_is_followed_and_checked(socket_dir):
    real = os.path.join(socket_dir, "real")
    os.mkdir(real, 0o700)
    link = os.path.join(socket_dir, "link")
    os.symlink(real, link)
    with sockets.SocketPlace(os.path.join(link, "w.sock")) as place:
        sock, _ = place.listen()
        sock.close()
    assert os.listdir(real) == ["w.sock"]
    os.chmod(real, 0o777)
    with pytest.raises(sockets.UnsafeSocketDir, match="other users"):
        sockets.SocketPlace(os.path.join(link, "w.sock"))  # the target is checked like any folder


def test_the_socket_is_bound_in_the_folder_that_was_checked_even_if_it_is_swapped_afterwards(socket_dir):
    folder = os.path.join(socket_dir, "w")
    place = sockets.SocketPlace(os.path.join(folder, "w.sock"))
    # someone swaps the folder between the check and the bind
    os.rename(folder, os.path.join(socket_dir, "checked"))
    os.mkdir(folder, 0o700)
    sock, _ = place.listen()
    try:
        assert os.listdir(os.path.join(socket_dir, "checked")) == ["w.sock"] and os.listdir(folder) == []
        client = socket.socket(socket.AF_UNIX)
        client.connect(place.address)  # connecting goes to the checked folder too
        assert sockets.check_peer(client, "test") == os.getpid()
        client.close()
    finally:
        sock.close()
        place.close()


def test_a_runtime_folder_of_another_user_or_a_symlink_into_one_is_refused(other_user, loose_base, socket_dir,
                                                                            monkeypatch):
    uid, gid = other_user
    theirs = os.path.join(socket_dir, "theirs")
    os.mkdir(theirs, 0o755)
    os.chown(theirs, uid, gid)
    monkeypatch.setenv("XDG_RUNTIME_DIR", theirs)
    with pytest.raises(sockets.UnsafeSocketDir, match="another user"):
        sockets.SocketPlace(sockets.default_socket_path(None, "cpu", "auto"))
    link = os.path.join(socket_dir, "runtime")
    os.symlink(theirs, link)
    monkeypatch.setenv("XDG_RUNTIME_DIR", link)
    with pytest.raises(sockets.UnsafeSocketDir, match="another user"):
        sockets.SocketPlace(sockets.default_socket_path(None, "cpu", "auto"))
    # a symlink that the other user made, in a sticky folder we share, is not followed either
    shared = os.path.join(socket_dir, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    mine = os.path.join(socket_dir, "mine")
    os.mkdir(mine, 0o700)
    planted = os.path.join(shared, "runtime")
    os.symlink(mine, planted)
    os.lchown(planted, uid, gid)
    with pytest.raises(sockets.UnsafeSocketDir, match="symbolic link of another user"):
        sockets.SocketPlace(os.path.join(planted, "w.sock"))


def test_a_runtime_folder_another_user_can_swap_is_refused_while_they_swap_and_they_hear_nothing(
        other_user, loose_base):
    uid, gid = other_user
    report = os.path.join(loose_base, "report")
    evil = os.path.join(loose_base, "evil")
    env = {**os.environ, "XDG_RUNTIME_DIR": loose_base}
    path = subprocess.run([sys.executable, "-c", "from diffill.lsp.wire import sockets; "
                           "print(sockets.default_socket_path(None, 'cpu', 'auto'))"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    name = os.path.basename(path)
    os.mkdir(evil, 0o777)
    os.chown(evil, uid, gid)
    # the other user keeps a folder with a listening socket of theirs and swaps it in and out
    swapper = subprocess.Popen([SYSTEM_PYTHON, "-c", LISTENER.replace(
        'print("READY", flush=True)',
        'print("READY", flush=True)\nimport threading, time\n'
        'def swap():\n'
        '    while True:\n'
        '        for a, b in ((sys.argv[3], sys.argv[4]), (sys.argv[4], sys.argv[3])):\n'
        '            try: os.rename(a, b)\n'
        '            except OSError: pass\n'
        '            time.sleep(0.001)\n'
        'threading.Thread(target=swap, daemon=True).start()'),
        os.path.join(evil, name), report, evil, os.path.join(loose_base, "diffill")],
        user=uid, group=gid, extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert swapper.stdout.readline().strip() == "READY", swapper.stderr.read()
        for _ in range(5):
            out = subprocess.run(WORKER + ["--socket", path], capture_output=True, text=True, timeout=60, env=env)
            assert out.returncode == 2 and "other users" in out.stderr, out.stderr

            async def connect():
                client = WorkerClient(Settings(worker_mode="shared", preload=False))
                with pytest.raises(WorkerError, match="not private"):
                    await client.start()
                await client.close()

            old = os.environ.get("XDG_RUNTIME_DIR")
            os.environ["XDG_RUNTIME_DIR"] = loose_base
            try:
                asyncio.run(connect())
            finally:
                if old is None:
                    del os.environ["XDG_RUNTIME_DIR"]
                else:
                    os.environ["XDG_RUNTIME_DIR"] = old
    finally:
        swapper.kill()
        swapper.wait()
        swapper.stdout.close()
        swapper.stderr.close()
    assert bytes_received(report) == []  # no one ever connected to the other user's socket


# ---- the peer ----------------------------------------------------------------------------------

async def test_the_server_refuses_a_socket_of_another_user_before_sending_a_byte(other_user, socket_dir):
    uid, gid = other_user
    attacker_dir = tempfile.mkdtemp(prefix="dfa-", dir="/tmp")
    os.chown(attacker_dir, uid, gid)
    report = os.path.join(attacker_dir, "report")
    try:
        with listener_as(other_user, os.path.join(attacker_dir, "w.sock"), report):
            # the other user's socket ends up at our socket's name (root can move it there)
            ours = os.path.join(socket_dir, "w.sock")
            os.rename(os.path.join(attacker_dir, "w.sock"), ours)
            client = WorkerClient(shared_settings(ours))
            with pytest.raises(WorkerError, match="belongs to another user"):
                await client.start()
            # even when the file looks like ours, the process behind it is not: SO_PEERCRED says so
            os.lchown(ours, os.getuid(), os.getgid())
            with pytest.raises(WorkerError, match="served by another user"):
                await client.start()
            assert "another user" in client.status["message"] and client.status["state"] == "error"
            await client.close()
            await asyncio.sleep(1.5)  # the listener reports each connection after a second of silence
            assert bytes_received(report) == [0]  # connected once (the peer check), and heard nothing
    finally:
        shutil.rmtree(attacker_dir, ignore_errors=True)


async def test_the_worker_says_nothing_to_a_client_of_another_user(other_user, socket_dir, fixed_answers):
    os.chmod(socket_dir, 0o755)
    path = os.path.join(socket_dir, "w.sock")
    proc = subprocess.Popen(WORKER + ["--socket", path, "--idle-timeout", "60"], env={**os.environ, **fixed_answers},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(path):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.chmod(path, 0o777)  # let the other user reach it: only the peer check stands in the way
        probe = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5); "
                 "print(len(s.recv(65536)))")
        uid, gid = other_user
        out = subprocess.run([SYSTEM_PYTHON, "-c", probe, path], user=uid, group=gid, extra_groups=[],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout.strip() == "0", out.stderr  # closed, not a byte
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()


# ---- a workerSocket that is not a socket -------------------------------------------------------

@pytest.mark.parametrize("kind", ["file", "symlink", "fifo", "folder"])
def test_a_worker_socket_path_that_is_not_a_socket_is_left_alone(socket_dir, kind, fixed_answers):
    path = os.path.join(socket_dir, "notes.txt")
    target = os.path.join(socket_dir, "target.txt")
    with open(target, "w") as f:
        f.write("precious\n")
    if kind == "file":
        shutil.copy(target, path)
    elif kind == "symlink":
        os.symlink(target, path)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        os.mkdir(path)
    for suffix in (".lock", ".log"):
        with open(path + suffix, "w") as f:
            f.write("also precious\n")
    before = {name: os.lstat(os.path.join(socket_dir, name)) for name in os.listdir(socket_dir)}
    out = subprocess.run(WORKER + ["--socket", path, "--detach"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **fixed_answers})
    assert out.returncode == 2 and "not a socket" in out.stderr and "leaves it alone" in out.stderr, out.stderr
    after = {name: os.lstat(os.path.join(socket_dir, name)) for name in os.listdir(socket_dir)}
    assert set(after) == set(before)
    for name, info in before.items():
        assert (after[name].st_ino, after[name].st_size, after[name].st_mtime_ns) == \
            (info.st_ino, info.st_size, info.st_mtime_ns), name
    with open(target) as f:
        assert f.read() == "precious\n"


async def test_the_server_reports_a_worker_socket_that_is_a_file_and_keeps_it(socket_dir, fixed_answers):
    path = os.path.join(socket_dir, "notes.txt")
    with open(path, "w") as f:
        f.write("precious\n")
    opts = {"workerMode": "shared", "workerSocket": path, "debounceMs": 0}
    async with editor(opts, env=fixed_answers) as s:
        status = await s.wait_ready()
        assert status["state"] == "error" and "not a socket" in status["message"]
    with open(path) as f:
        assert f.read() == "precious\n"
    assert sorted(os.listdir(socket_dir)) == ["notes.txt"]


async def test_the_lock_and_log_of_a_chosen_socket_live_in_the_private_runtime_folder(socket_dir, fixed_answers):
    path = os.path.join(socket_dir, "w.sock")
    opts = {"workerMode": "shared", "workerSocket": path, "workerIdleTimeout": 30, "debounceMs": 0}
    async with editor(opts, env=fixed_answers) as s:
        pid = (await s.stats())["worker"]["status"]["pid"]
    assert sorted(os.listdir(socket_dir)) == ["w.sock"]
    lock, log = sockets.lock_path(path), sockets.log_path(path)
    assert os.path.dirname(lock) == sockets.runtime_dir() == os.path.dirname(log)
    assert daemon_pid(path) == pid and os.path.isfile(log)
    assert stat.S_IMODE(os.stat(sockets.runtime_dir()).st_mode) == 0o700


async def test_the_server_reports_an_unsafe_runtime_folder_in_its_status(loose_base, fixed_answers):
    async with editor({"workerMode": "shared", "debounceMs": 0},
                      env={**fixed_answers, "XDG_RUNTIME_DIR": loose_base}) as s:
        status = await s.wait_ready()
        assert status["state"] == "error"
        assert "not private" in status["message"] and "other users" in status["message"]
        errors = [m for m in s.client.messages if "not private" in m.message]
        assert len(errors) == 1  # told once
    assert os.listdir(loose_base) == []


def test_only_root_and_this_user_are_trusted_outside_a_user_namespace(monkeypatch):
    assert sockets.trusted_owners() == {0, os.getuid()}  # this machine runs in the initial namespace
    monkeypatch.setattr(sockets, "_unmapped_uid", lambda: 65534)  # as inside a Flatpak
    assert sockets.trusted_owners() == {0, os.getuid(), 65534}


def test_serve_check_reports_a_worker_socket_that_is_a_file_or_in_an_unsafe_folder(socket_dir, loose_base,
                                                                                  fixed_answers):
    path = os.path.join(socket_dir, "notes.txt")
    with open(path, "w") as f:
        f.write("precious\n")
    for socket_path, says in ((path, "not a socket"), (os.path.join(loose_base, "w.sock"), "other users")):
        settings = json.dumps({"workerMode": "shared", "workerSocket": socket_path})
        out = subprocess.run([sys.executable, "-m", "diffill.lsp.cli", "serve", "--check", "--settings", settings],
                             capture_output=True, text=True, timeout=120, env={**os.environ, **fixed_answers})
        assert out.returncode == 1 and says in out.stdout, out.stdout + out.stderr
    with open(path) as f:
        assert f.read() == "precious\n"


def test_a_stale_socket_is_removed_only_when_a_diffill_worker_left_it(socket_dir, fixed_answers):
    path = os.path.join(socket_dir, "w.sock")
    other = socket.socket(socket.AF_UNIX)
    other.bind(path)  # some other program of ours left a socket at that name
    other.close()
    env = {**os.environ, **fixed_answers}
    out = subprocess.run(WORKER + ["--socket", path], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "no diffill worker left there" in out.stderr, out.stderr
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    os.unlink(path)
    # a worker that dies without cleaning up: the next one may replace its socket
    proc = subprocess.Popen(WORKER + ["--socket", path, "--idle-timeout", "60"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    proc.kill()
    proc.wait()
    left = os.lstat(path)
    proc = subprocess.Popen(WORKER + ["--socket", path, "--idle-timeout", "60"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (os.path.exists(path) and sockets.identity(os.lstat(path)) != sockets.identity(left)):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert daemon_pid(path) == proc.pid
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()
