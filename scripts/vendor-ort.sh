#!/usr/bin/env bash
# Vendor ONNX Runtime Web (its WASM-only build) into the page's assets from the npm registry.
#
#   scripts/vendor-ort.sh            the version pinned in src/audiototext/web/js/ort-runtime.js
#   scripts/vendor-ort.sh 1.32.0     another one: replaces the folder and the pin
#
# Only one build is kept: ort.wasm.min.mjs (the API), ort-wasm-simd-threaded.mjs (Emscripten's
# glue, also the script of its thread workers) and ort-wasm-simd-threaded.wasm. The .wasm is
# stored gzip-compressed only (.wasm.gz: 3.8 MB instead of 15) and sent as it is to browsers
# that accept gzip; the two scripts are stored plain and gzipped. SHA256SUMS lists the
# upstream (uncompressed) files and the tarball's npm integrity; tests/web/test_ort_vendor.py
# checks the folder against it. The folder's name carries the version, so its URLs are
# immutable and served with long-cache headers.
set -euo pipefail
cd "$(dirname "$0")/.."
PIN_FILE=src/audiototext/web/js/ort-runtime.js
current=$(sed -n 's/^export const ORT_VERSION = "\(.*\)";$/\1/p' "$PIN_FILE")
version=${1:-$current}
[ -n "$version" ] || { echo "no version given and none pinned in $PIN_FILE" >&2; exit 1; }
FILES=(ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "onnxruntime-web@$version" >pack.txt)
tarball="$tmp/$(tail -n 1 "$tmp/pack.txt")"
integrity=$(npm view "onnxruntime-web@$version" dist.integrity)
# The registry's integrity is sha512 of the tarball, base64: check what we unpack against it.
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w 0)"
[ "$actual" = "$integrity" ] || { echo "tarball integrity $actual != registry's $integrity" >&2; exit 1; }
tar -xzf "$tarball" -C "$tmp"

dest=src/audiototext/web/vendor/ort-$version
rm -rf src/audiototext/web/vendor/ort-*
mkdir -p "$dest"
{
    echo "# onnxruntime-web $version from the npm registry ($integrity)"
    echo "# sha256 of the upstream files (the .wasm is stored as .wasm.gz)"
    for f in "${FILES[@]}"; do
        (cd "$tmp/package/dist" && sha256sum "$f")
    done
} >"$dest/SHA256SUMS"
for f in "${FILES[@]}"; do
    # -n: no name or time in the header, so the same input gives the same bytes.
    gzip -9 -n -c "$tmp/package/dist/$f" >"$dest/$f.gz"
    case $f in *.wasm) ;; *) cp "$tmp/package/dist/$f" "$dest/$f" ;; esac
done
# The package ships no licence file; its package.json says MIT, and this is MIT's text.
[ "$(node -p "require('$tmp/package/package.json').license")" = MIT ] \
    || { echo "onnxruntime-web $version is no longer MIT: check its licence" >&2; exit 1; }
cat >"$dest/LICENSE" <<'END'
MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
END
sed -i "s/^export const ORT_VERSION = \".*\";$/export const ORT_VERSION = \"$version\";/" "$PIN_FILE"
du -sh "$dest"
echo "vendored onnxruntime-web $version into $dest"
