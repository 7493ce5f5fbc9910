#!/usr/bin/env bash
# check_deps_prefix.sh: proves the dependency prefix of scripts/deps_prefix.sh
# on a clean Debian 12 root, as a bare GPU machine would use it: a debootstrap
# root with only build-essential, cmake, ninja-build, python3 and, standing in
# for the GPU machine's PyTorch, Debian's libtorch-dev and python3-torch (CPU),
# and none of the -dev packages the prefix provides. The working tree and the
# prefix are copied in, as the device tool copies them, and
# scripts/gpu_check.sh --device cpu runs there: configure and build against
# the prefix (at another path than it was made at), the unit tests, the
# training, resume and timing phases, the report. Then ctest -R '^unit$'.
#
#   bash scripts/check_deps_prefix.sh                  # root in /var/tmp/clx-bookworm-root, prefix .gpu/deps
#   bash scripts/check_deps_prefix.sh --root DIR --prefix DIR
#
# Needs root and Debian's debootstrap. The root is made once (a few minutes)
# and reused; the build inside takes 15-40 minutes on 2 cores (docs/gpu.md),
# so this is not part of the ctest suite. Exit status 0 when the build, the
# unit tests and every phase of the report passed.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=/var/tmp/clx-bookworm-root PREFIX=$SRC/.gpu/deps
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --root) ROOT=${2:?--root needs a folder}; shift ;;
    --prefix) PREFIX=${2:?--prefix needs a folder}; shift ;;
    *) echo "check_deps_prefix.sh: error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
fail() { echo "check_deps_prefix.sh: error: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot, mount)"
command -v debootstrap >/dev/null || fail "debootstrap is missing (apt-get install debootstrap)"
[ -f "$PREFIX/prefix.cmake" ] || fail "no prefix at $PREFIX (bash scripts/deps_prefix.sh $PREFIX)"
PREFIX=$(cd "$PREFIX" && pwd)
stamp() { date -u +%H:%M:%S; }
START=$(date +%s)

# The machine's own Debian mirror and apt settings (the mirror may be local).
mirror=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || fail "no bookworm mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources"

mounted=()
cleanup() { local m; for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
mount_in_root() {  # mount the host's /proc and /dev into the root for the duration
  mount -t proc proc "$ROOT/proc" && mounted+=("$ROOT/proc")
  mount --bind /dev "$ROOT/dev" && mounted+=("$ROOT/dev")
}

# Build tools and LibTorch only: the packages a bare GPU machine has, in Debian's form.
ROOT_PACKAGES=(build-essential cmake ninja-build python3 libtorch-dev python3-torch)
if [ ! -f "$ROOT/.clx-root-ready" ]; then
  echo "[$(stamp)] debootstrap bookworm into $ROOT from $mirror"
  rm -rf "$ROOT"
  debootstrap --variant=minbase bookworm "$ROOT" "$mirror" > /tmp/clx-debootstrap.log 2>&1 ||
    { tail -20 /tmp/clx-debootstrap.log; fail "debootstrap failed (log: /tmp/clx-debootstrap.log)"; }
  rm -f "$ROOT"/etc/apt/sources.list
  cp /etc/apt/sources.list.d/*.sources "$ROOT/etc/apt/sources.list.d/" 2>/dev/null || true
  [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$ROOT/etc/apt/"
  grep -l 'Check-Valid-Until\|Check-Date' /etc/apt/apt.conf.d/* 2>/dev/null | xargs -r cp -t "$ROOT/etc/apt/apt.conf.d/"
  mount_in_root
  echo "[$(stamp)] installing ${ROOT_PACKAGES[*]}"
  chroot "$ROOT" apt-get update -q > /tmp/clx-root-apt.log 2>&1
  chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${ROOT_PACKAGES[@]}" \
    >> /tmp/clx-root-apt.log 2>&1 || { tail -20 /tmp/clx-root-apt.log; fail "apt-get install in the root failed"; }
  chroot "$ROOT" apt-get clean
  touch "$ROOT/.clx-root-ready"
  cleanup
  mounted=()
fi
echo "[$(stamp)] root ready ($(( $(date +%s) - START )) s)"

# Which of the prefix's packages the root has anyway (libtorch-dev pulls zlib1g-dev through
# libprotobuf-dev): the build must still take each from the prefix, checked below.
present=()
while IFS='=' read -r package _; do
  chroot "$ROOT" dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" && present+=("$package")
done < "$PREFIX/PACKAGES"
echo "prefix packages also installed in the root: ${present[*]:-none}"

# The working tree and the prefix, copied as the device tool copies them.
rm -rf "$ROOT/src"
mkdir -p "$ROOT/src/.gpu"
(cd "$SRC" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -C "$ROOT/src" -xf -
cp -a "$PREFIX" "$ROOT/src/.gpu/deps"
mount_in_root
echo "[$(stamp)] gpu_check.sh --device cpu in the root (build included)"
build_start=$(date +%s)
status=0
chroot "$ROOT" /bin/bash -c 'cd /src && PYTHON=/usr/bin/python3 bash scripts/gpu_check.sh --device cpu --prefix .gpu/deps \
  --out /src/out/gpu --budget 7200 --quick' || status=$?
echo "[$(stamp)] gpu_check.sh exit $status after $(( $(date +%s) - build_start )) s"
cat "$ROOT/src/out/gpu/phases.tsv"
chroot "$ROOT" /bin/bash -c 'cd /src && ctest --test-dir build-gpu -R "^unit$" --output-on-failure' || status=1

# Every dependency the cache recorded comes from the prefix.
cache=$ROOT/src/build-gpu/CMakeCache.txt
for variable in Boost_DIR GTest_DIR nlohmann_json_DIR HDF5_hdf5_LIBRARY_RELEASE ZLIB_LIBRARY CLX_SZIP_LIBRARY MATIO_LIBRARY; do
  value=$(grep "^$variable:" "$cache" | cut -d= -f2-)
  case "$value" in
    /src/.gpu/deps/*) echo "ok   $variable = $value" ;;
    *) echo "FAIL $variable = ${value:-unset} (not from the prefix)"; status=1 ;;
  esac
done
# No executable needs a shared library of the prefix's packages itself (their
# archives are linked in; Debian's libtorch brings its own libhdf5 along, which
# is why this reads the executables' own NEEDED entries, not ldd's closure).
for exe in train bench tests/test_unit; do
  if objdump -p "$ROOT/src/build-gpu/$exe" | awk '$1 == "NEEDED" {print $2}' |
     grep -E 'libboost|libhdf5|libsz|libaec|libgtest|libxxhash|libmatio|libz\.'; then
    echo "FAIL $exe needs a shared library of the prefix's packages"; status=1
  else
    echo "ok   $exe needs none of the prefix's packages as a shared library"
  fi
done
mkdir -p "$SRC/out"
cp "$ROOT/src/out/gpu/gpu_report.md" "$SRC/out/check_deps_prefix_report.md"
echo "[$(stamp)] done in $(( $(date +%s) - START )) s, exit $status; report: out/check_deps_prefix_report.md"
exit "$status"
