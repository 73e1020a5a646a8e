"""Make the one file: the launcher, then the application folder as tar + xz (or gzip), then
the trailer launcher.py reads. Usage: pack.py APP_DIR LAUNCHER OUTPUT VERSION [xz|gz]"""

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


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # The same inputs give the same bytes (and so the same unpack folder name).
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def main() -> None:
    app_dir, launcher, output = (Path(a) for a in sys.argv[1:4])
    version = sys.argv[4]
    compression = sys.argv[5] if len(sys.argv) > 5 else "gz"
    tmp = output.with_name(output.name + ".tmp")
    shutil.copyfile(launcher, tmp)
    offset = tmp.stat().st_size
    with tmp.open("ab") as out:
        options = {"preset": 6} if compression == "xz" else {"compresslevel": 9}
        with tarfile.open(fileobj=out, mode=f"w:{compression}", **options) as tar:
            for path in [app_dir, *sorted(app_dir.rglob("*"))]:
                arcname = path.relative_to(app_dir).as_posix() or "."
                tar.add(path, arcname=arcname, recursive=False, filter=_normalise)
    size = tmp.stat().st_size - offset
    digest = hashlib.sha256()
    with tmp.open("rb") as f:
        f.seek(offset)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    trailer = json.dumps(
        {
            "offset": offset,
            "size": size,
            "key": digest.hexdigest()[:16],
            "version": version,
            "compression": compression,
        }
    ).encode()
    with tmp.open("ab") as out:
        out.write(trailer + struct.pack("<I", len(trailer)) + MAGIC)
    os.chmod(tmp, 0o755)
    os.replace(tmp, output)
    print(f"{output}: launcher {offset} B, application {size} B ({compression})")


if __name__ == "__main__":
    main()
