"""The one file's launcher: unpack the application once into a versioned folder, then run it.

PyInstaller's one-file mode unpacks everything into a fresh temporary folder at every start
and deletes it at exit. This launcher is itself a tiny one-file build (the interpreter and a
few standard modules); the application (a one-folder PyInstaller build, tar + xz or gzip) is
appended after it, outside PyInstaller's archive, with a trailer that says where it is:

    <launcher ELF> <payload> <JSON: offset, size, key, version> <4-byte JSON length> MAGIC

At start it looks for ``<home>/bin/<version>-<key>/`` (``<home>``: ``AUDIOTOTEXT_HOME``, else
``$XDG_CACHE_HOME/audiototext``, else ``~/.cache/audiototext``; ``<key>`` is a hash of the
payload, so a new build never runs an old unpack). Missing, it unpacks into a temporary
sibling and renames it into place (two first starts at once: one wins, the other's copy is
dropped). Then it removes the unpack folders of other builds that no process runs (each run
holds a shared lock on its folder's ``.in-use`` for its whole life, across ``exec``), and
``exec``s the application with the same arguments.
"""

import fcntl
import json
import os
import shutil
import struct
import sys
import tarfile
import tempfile

MAGIC = b"ATTPAYL1"
TRAILER_LEN = struct.calcsize("<I") + len(MAGIC)
APP = "audiototext"
IN_USE = ".in-use"


def fail(message):
    sys.stderr.write(f"audiototext: {message}\n")
    sys.exit(1)


def read_trailer(path):
    with open(path, "rb") as f:
        f.seek(-TRAILER_LEN, os.SEEK_END)
        tail = f.read(TRAILER_LEN)
        if tail[-len(MAGIC) :] != MAGIC:
            fail(f"{path} carries no application (was the file cut short?)")
        (length,) = struct.unpack("<I", tail[: -len(MAGIC)])
        f.seek(-TRAILER_LEN - length, os.SEEK_END)
        return json.loads(f.read(length))


def home():
    configured = os.environ.get("AUDIOTOTEXT_HOME", "").strip()
    if configured:
        return os.path.expanduser(configured)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "audiototext")
    user = os.path.expanduser("~")
    if user in ("", "~", "/") or not os.access(user, os.W_OK):
        return os.path.join(tempfile.gettempdir(), f"audiototext-{os.getuid()}")
    return os.path.join(user, ".cache", "audiototext")


class _Slice:
    """The payload's bytes of the executable as a file object (tarfile streams it)."""

    def __init__(self, f, offset, size):
        self._f, self._left = f, size
        f.seek(offset)

    def read(self, n=-1):
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data


def unpack(exe, info, target):
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".unpack-{os.getpid()}-", dir=parent)
    try:
        with open(exe, "rb") as f:
            stream = _Slice(f, info["offset"], info["size"])
            mode = "r|" + info.get("compression", "xz")
            with tarfile.open(fileobj=stream, mode=mode) as tar:
                tar.extractall(tmp, filter="tar")
        open(os.path.join(tmp, IN_USE), "w").close()
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isfile(os.path.join(target, APP)):
                raise
            # Another first start won the race: use its copy.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(parent, keep):
    """Remove other builds' unpack folders that no running process holds, and leftovers
    of unpacks that were interrupted."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        path = os.path.join(parent, name)
        if name == keep or not os.path.isdir(path):
            continue
        if name.startswith(".unpack-"):
            try:
                pid = int(name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if not _pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)
            continue
        try:
            fd = os.open(os.path.join(path, IN_USE), os.O_RDONLY)
        except OSError:
            continue  # not one of ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a process runs it
        # Renamed first, so no new start picks it up half-deleted.
        trash = os.path.join(parent, f".unpack-{os.getpid()}-old-{name}")
        try:
            os.rename(path, trash)
        except OSError:
            os.close(fd)
            continue
        shutil.rmtree(trash, ignore_errors=True)
        os.close(fd)


def child_environment():
    """The environment the user gave, without what PyInstaller's bootloader set for this
    launcher (the application has its own bootloader)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("_PYI_") and k != "_MEIPASS2"}
    original = env.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is not None:
        env["LD_LIBRARY_PATH"] = original
    else:
        env.pop("LD_LIBRARY_PATH", None)
    env["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
    return env


def main():
    exe = sys.executable
    info = read_trailer(exe)
    name = f"{info['version']}-{info['key']}"
    parent = os.path.join(home(), "bin")
    target = os.path.join(parent, name)
    if not os.path.isfile(os.path.join(target, APP)):
        try:
            unpack(exe, info, target)
        except (OSError, tarfile.TarError) as exc:
            fail(f"cannot unpack into {parent} ({exc}); set AUDIOTOTEXT_HOME to a writable folder")
    lock = os.open(os.path.join(target, IN_USE), os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_SH)
    os.set_inheritable(lock, True)  # held by the application until it exits
    clean_stale(parent, name)
    app = os.path.join(target, APP)
    os.execve(app, [app, *sys.argv[1:]], child_environment())


if __name__ == "__main__":
    main()
