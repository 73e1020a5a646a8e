"""Make the one file: the launcher with the application folder (tar + gzip or xz) inside it,
and a trailer launcher.py reads. Usage: pack.py APP_DIR LAUNCHER OUTPUT VERSION [gz|xz]

The application goes *before* the launcher's PyInstaller archive (its ELF section ``pydata``),
not after it: the bootloader finds its archive by searching backwards from the end of the file
for the archive's cookie, and 200 MB of data after it cost every start 1.7 s. The ELF
section header offsets are moved by the inserted length, so the file stays a valid ELF:

    <ELF code and data> <application> <pydata: PyInstaller archive> <section headers>
    <trailer: JSON {offset, size, key, version, compression}> <4-byte JSON length> MAGIC
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import tarfile
from pathlib import Path

MAGIC = b"ATTPAYL1"
SECTION = b"pydata"


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # The same inputs give the same bytes (and so the same unpack folder name).
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _split_elf(elf: bytearray) -> int:
    """Where the PyInstaller archive section starts in the launcher (ELF64 little-endian)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise SystemExit("the launcher is not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", elf, 0x36)
    sections = [struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    strtab = sections[shstrndx][4]
    for name, _type, _flags, _addr, offset, _size in sections:
        end = elf.index(b"\0", strtab + name)
        if bytes(elf[strtab + name : end]) == SECTION:
            start = offset
            break
    else:
        raise SystemExit(f"the launcher has no {SECTION.decode()} section")
    for i in range(phnum):
        _t, _f, p_offset, _va, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize
        )
        if p_filesz and p_offset + p_filesz > start:
            raise SystemExit("a loaded segment lies after the archive section; cannot insert")
    return start


def _shift_sections(elf: bytearray, start: int, by: int) -> None:
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    _phentsize, _phnum, shentsize, shnum, _shstrndx = struct.unpack_from("<HHHHH", elf, 0x36)
    for i in range(shnum):
        at = shoff + i * shentsize + 0x18  # sh_offset
        (offset,) = struct.unpack_from("<Q", elf, at)
        if offset >= start:
            struct.pack_into("<Q", elf, at, offset + by)
    struct.pack_into("<Q", elf, 0x28, shoff + by)


def main() -> None:
    app_dir, launcher, output = (Path(a) for a in sys.argv[1:4])
    version = sys.argv[4]
    compression = sys.argv[5] if len(sys.argv) > 5 else "gz"
    elf = bytearray(launcher.read_bytes())
    start = _split_elf(elf)

    payload = output.with_name(output.name + ".payload")
    options = {"preset": 6} if compression == "xz" else {"compresslevel": 9}
    with tarfile.open(payload, mode=f"w:{compression}", **options) as tar:  # type: ignore[call-overload]
        for path in [app_dir, *sorted(app_dir.rglob("*"))]:
            arcname = path.relative_to(app_dir).as_posix() or "."
            tar.add(path, arcname=arcname, recursive=False, filter=_normalise)
    size = payload.stat().st_size
    digest = hashlib.sha256()
    with payload.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)

    _shift_sections(elf, start, size)
    trailer = json.dumps(
        {
            "offset": start,
            "size": size,
            "key": digest.hexdigest()[:16],
            "version": version,
            "compression": compression,
        }
    ).encode()
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("wb") as out:
        out.write(elf[:start])
        with payload.open("rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
        out.write(elf[start:])
        out.write(trailer + struct.pack("<I", len(trailer)) + MAGIC)
    payload.unlink()
    os.chmod(tmp, 0o755)
    os.replace(tmp, output)
    print(f"{output}: launcher {len(elf)} B, application {size} B ({compression})")


if __name__ == "__main__":
    main()
