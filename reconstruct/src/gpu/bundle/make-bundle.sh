#!/bin/bash
# make-bundle.sh BEAMLINE_BINARY DEST: the GPU check bundle (see README.md here), at most 60 MiB.
#
# The binary is stripped of debug information and carried with the exact shared libraries it links here
# (ldd), except the C library itself (glibc: libc, libm, libdl, libpthread, librt, libresolv, ld-linux),
# which every Linux has and which must match its kernel; run.sh puts lib/ first on LD_LIBRARY_PATH.
set -euo pipefail
BIN=${1:?usage: make-bundle.sh BEAMLINE_BINARY DEST}
DEST=${2:?usage: make-bundle.sh BEAMLINE_BINARY DEST}
HERE=$(cd "$(dirname "$0")" && pwd)
LIMIT=$((60 * 1024 * 1024))
rm -rf "$DEST"
mkdir -p "$DEST/lib"
objcopy --strip-debug "$BIN" "$DEST/beamline"
ldd "$BIN" | awk '/=> \// { print $3 }' | while read -r lib; do
    case "$(basename "$lib")" in
        libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libresolv.so.*|ld-linux*) ;;
        *) cp -L "$lib" "$DEST/lib/" ;;
    esac
done
cp "$HERE/run.sh" "$HERE/README.md" "$DEST/"
chmod +x "$DEST/run.sh" "$DEST/beamline"
{
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n) ($(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), glibc $(ldd --version | head -1 | awk '{print $NF}'))"
    "$DEST/beamline" --version 2>/dev/null || true
    (cd "$DEST" && find . -type f | sort | xargs sha256sum)
} > "$DEST/MANIFEST"
SIZE=$(du -sb "$DEST" | cut -f1)
echo "gpu bundle: $DEST, $((SIZE / 1024 / 1024)) MiB ($(ls "$DEST/lib" | wc -l) libraries)"
if [ "$SIZE" -gt "$LIMIT" ]; then
    echo "gpu bundle is $SIZE bytes, over the 60 MiB limit" >&2
    exit 1
fi
