#!/usr/bin/env bash
# deps_prefix.sh DIR: the build's dependencies beyond LibTorch and CUDA, unpacked
# from Debian 12 packages into a relocatable folder for a machine that has none
# of them (a GPU machine with only CUDA, a CUDA PyTorch and a compiler). Runs on
# a Debian 12 machine with apt; nothing is installed on it. See docs/gpu.md.
#
#   bash scripts/deps_prefix.sh .gpu/deps           # prefix + Fashion-MNIST for scripts/gpu_check.sh
#   bash scripts/deps_prefix.sh DIR --no-data       # the prefix alone
#
# Every library is a static archive, so nothing needs LD_LIBRARY_PATH at run
# time and the executables carry no dependency on a Debian shared library:
# HDF5's shared library alone would pull in curl, OpenSSL, GnuTLS and Kerberos
# (25 MB). Open MPI (75 MB with hwloc's libxml2 and ICU) and OpenCV (its image
# codecs pull GDAL: 76 MB of direct dependencies) do not fit the 64 MiB a device
# run can carry, so the prefix has neither: the GPU build has CLX_WITH_MPI=OFF
# and no image-folder loader (one rank over NCCL needs no MPI).
#
# DIR then holds:
#   usr/...          the unpacked packages (Debian layout), pruned to what the build includes
#   prefix.cmake     cmake -C DIR/prefix.cmake: where each package is, relative to this file
#   env.sh           source it: CMAKE_PREFIX_PATH and PKG_CONFIG_PATH (LD_LIBRARY_PATH: nothing to add)
#   REQUIREMENTS     the glibc and libstdc++ symbol versions the archives need (read by gpu_check.sh)
#   PACKAGES         package versions
#   data/fashion-mnist/  the four IDX files (unless --no-data)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  echo "Options: --no-data (no Fashion-MNIST copy), --data-from DIR (default /usr/share/datasets/fashion-mnist)"
}

DIR="" WITH_DATA=1 DATA_FROM=/usr/share/datasets/fashion-mnist
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --no-data) WITH_DATA=0 ;;
    --data-from) DATA_FROM=${2:?--data-from needs a folder}; shift ;;
    -*) echo "deps_prefix.sh: error: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) [ -z "$DIR" ] || { echo "deps_prefix.sh: error: one DIR only (got '$DIR' and '$1')" >&2; exit 2; }; DIR=$1 ;;
  esac
  shift
done
[ -n "$DIR" ] || { usage >&2; exit 2; }
for tool in apt-get dpkg-deb g++ nm objdump strip; do
  command -v "$tool" >/dev/null || { echo "deps_prefix.sh: error: '$tool' is missing (a Debian 12 machine with build-essential is needed)" >&2; exit 1; }
done
if [ "$WITH_DATA" = 1 ] && ! ls "$DATA_FROM"/train-images-idx3-ubyte* >/dev/null 2>&1; then
  echo "deps_prefix.sh: error: no Fashion-MNIST in $DATA_FROM (apt-get install dataset-fashion-mnist, or --data-from DIR, or --no-data)" >&2
  exit 1
fi

ARCH_LIB=usr/lib/x86_64-linux-gnu
# package: what the build takes from it.
PACKAGES=(
  libboost1.74-dev                  # Boost headers, pruned to those Program_options includes
  libboost-program-options1.74-dev  # libboost_program_options.a and Boost's CMake package
  nlohmann-json3-dev                # nlohmann/json.hpp and its CMake package
  libhdf5-dev                       # libhdf5_serial.a and the C headers
  libaec-dev                        # libsz.a and libaec.a: the szip filter libhdf5 was built with
  zlib1g-dev                        # libz.a (gzipped IDX files, HDF5's deflate)
  libxxhash-dev                     # libxxhash.a (fingerprints)
  libmatio-dev                      # libmatio.a (SVHN's .mat files; links against the HDF5 above)
  libgtest-dev                      # libgtest.a, libgtest_main.a and GTest's CMake package
)

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
DEBS=$(mktemp -d /tmp/clx-deps-debs.XXXXXX)
trap 'rm -rf "$DEBS"' EXIT
chmod 755 "$DEBS"  # apt's download sandbox user must be able to write here

echo "deps_prefix: downloading ${#PACKAGES[@]} packages"
download() { (cd "$DEBS" && apt-get download -q "${PACKAGES[@]}") >"$DEBS/download.log" 2>&1; }
if ! download; then
  echo "deps_prefix: download failed; refreshing the package lists once (apt-get update)"
  apt-get update -q >/dev/null
  download || { cat "$DEBS/download.log" >&2; echo "deps_prefix.sh: error: apt-get download failed" >&2; exit 1; }
fi

rm -rf "${DIR:?}/usr" "${DIR:?}/data"
: > "$DIR/PACKAGES"
for deb in "$DEBS"/*.deb; do
  dpkg-deb -x "$deb" "$DIR"
  dpkg-deb -f "$deb" Package Version | paste -sd' ' | sed 's/Package: //; s/ Version: /=/' >> "$DIR/PACKAGES"
done

# ---- prune: documentation, and what the build never reads -----------------------------------
rm -rf "$DIR/usr/share/doc" "$DIR/usr/share/man" "$DIR/usr/share/lintian"
# Static archives only: drop the shared-library links (their targets are in the
# runtime packages, not downloaded) and Boost's shared variant, so that Boost's
# CMake package, FindHDF5 and find_library pick the archives.
find "$DIR/$ARCH_LIB" -maxdepth 3 -name '*.so' -delete
rm -f "$DIR/$ARCH_LIB"/cmake/boost_program_options-*/libboost_program_options-variant-shared.cmake
# HDF5: the C library only (no C++, Fortran or high-level libraries).
find "$DIR/$ARCH_LIB" -maxdepth 3 \( -name 'libhdf5*_cpp.a' -o -name 'libhdf5*fortran*.a' -o -name 'libhdf5*_hl*.a' \
  -o -name '*.settings' \) -delete
rm -rf "$DIR/usr/include/hdf5/serial"/*.mod

# Headers: Boost's 138 MB and HDF5's C++ headers, kept to what the sources'
# includes reach (as GCC and, when installed, Clang see them), plus Boost's
# config tree whole, since another compiler selects other files in it.
probe=$DEBS/probe.cpp
{
  grep -rhoE '#include <boost/[^>]+>' "$REPO"/runtime "$REPO"/launch "$REPO"/algorithms "$REPO"/models "$REPO"/tests 2>/dev/null | sort -u
  echo '#include <boost/program_options.hpp>'
  echo '#include <hdf5.h>'
} > "$probe"
: > "$DEBS/keep"
for cxx in g++ clang++; do
  command -v "$cxx" >/dev/null || continue
  "$cxx" -std=c++17 -M -I "$DIR/usr/include" -I "$DIR/usr/include/hdf5/serial" "$probe" | tr ' \\' '\n\n' |
    grep -E "^$DIR/usr/include/(boost|hdf5)/" >> "$DEBS/keep"
done
find "$DIR/usr/include/boost/config" -type f >> "$DEBS/keep"
sort -u "$DEBS/keep" -o "$DEBS/keep"
find "$DIR/usr/include/boost" "$DIR/usr/include/hdf5" -type f | sort | comm -23 - "$DEBS/keep" | xargs -r rm -f
find "$DIR/usr/include" -type d -empty -delete
find "$DIR/$ARCH_LIB" -name '*.a' -exec strip --strip-debug {} +

# ---- relocatable: no absolute path into /usr survives ---------------------------------------
# Symbolic links: absolute ones become relative when their target is in DIR; dangling ones go.
while IFS= read -r link; do
  target=$(readlink "$link")
  if [ -e "$DIR$target" ]; then
    ln -sfn "$(realpath --relative-to="$(dirname "$link")" "$DIR$target")" "$link"
  else
    rm -f "$link"
  fi
done < <(find "$DIR/usr" -type l -lname '/*')
find "$DIR/usr" -xtype l -delete
# pkg-config files: paths relative to the file (${pcfiledir}).
while IFS= read -r pc; do
  up=$(realpath --relative-to="$(dirname "$pc")" "$DIR/usr")
  sed -i -e "s|^prefix=/usr\$|prefix=\${pcfiledir}/$up|" -e "s|=/usr/|=\${pcfiledir}/$up/|g" \
         -e "s|-I/usr/|-I\${pcfiledir}/$up/|g" -e "s|-L/usr/|-L\${pcfiledir}/$up/|g" "$pc"
done < <(find "$DIR/usr" -name '*.pc')
# CMake packages compute their prefix from their own location; the only
# absolute paths left compare against /usr to detect a /lib -> /usr/lib link.
leftover=$(grep -rlE '(^|[=" ])/usr/(include|lib)' "$DIR/usr" --include='*.pc' || true)
[ -z "$leftover" ] || { echo "deps_prefix.sh: error: absolute paths left in: $leftover" >&2; exit 1; }

# ---- what the archives need from the machine that links them --------------------------------
# Each undefined symbol of the archives, at the oldest version this machine's
# glibc, libstdc++ and libgcc export it under (references in static archives
# carry no version: the linker binds them to whatever the linking machine has).
required_versions() {
  local libs=(/lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/libm.so.6
              "$(g++ -print-file-name=libstdc++.so.6)" /lib/x86_64-linux-gnu/libgcc_s.so.1)
  join <(nm -u --format=posix "$DIR/$ARCH_LIB"/*.a 2>/dev/null | awk 'NF >= 2 && $2 == "U" {print $1}' | sort -u) \
       <(objdump -T "${libs[@]}" | awk 'NF >= 7 { v = $(NF-1); gsub(/[()]/, "", v);
                                               if (v ~ /^(GLIBC|GLIBCXX|CXXABI)_[0-9]/) print $NF, v }' | sort -k1,1) |
    awk '{ i = index($2, "_"); print $1, substr($2, 1, i - 1), substr($2, i + 1) }' |
    sort -k1,1 -k3,3V | awk '!seen[$1]++' | sort -k2,2 -k3,3V |
    awk '{ last[$2] = $3; why[$2] = $1 } END { for (f in last) print tolower(f) "=" last[f] " " why[f] }' | sort
}
{
  echo "# Written by scripts/deps_prefix.sh on $(date -u +%Y-%m-%dT%H:%MZ) from Debian $(cat /etc/debian_version)."
  echo "# Oldest symbol versions the static archives need from the linking machine (name=version symbol)."
  required_versions
} > "$DIR/REQUIREMENTS"

# ---- how a build finds it -------------------------------------------------------------------
cat > "$DIR/prefix.cmake" <<'EOF'
# Written by scripts/deps_prefix.sh. Load with: cmake -C <this file> ... (paths
# are computed from this file's location, so the folder can move).
set(_clx_deps "${CMAKE_CURRENT_LIST_DIR}")
set(_clx_lib "${_clx_deps}/usr/lib/x86_64-linux-gnu")
set(Boost_DIR "${_clx_lib}/cmake/Boost-1.74.0" CACHE PATH "Boost from the dependency prefix")
set(GTest_DIR "${_clx_lib}/cmake/GTest" CACHE PATH "GoogleTest from the dependency prefix")
set(nlohmann_json_DIR "${_clx_deps}/usr/share/cmake/nlohmann_json" CACHE PATH "nlohmann-json from the dependency prefix")
set(HDF5_ROOT "${_clx_lib}/hdf5/serial" CACHE PATH "HDF5 (serial, static) from the dependency prefix")
set(HDF5_USE_STATIC_LIBRARIES ON CACHE BOOL "the prefix has libhdf5.a only")
set(ZLIB_INCLUDE_DIR "${_clx_deps}/usr/include" CACHE PATH "zlib from the dependency prefix")
set(ZLIB_LIBRARY "${_clx_lib}/libz.a" CACHE FILEPATH "zlib from the dependency prefix")
# find_path / find_library of anything else (xxhash, szip): the prefix first,
# also on hosts whose CMake does not search lib/x86_64-linux-gnu.
set(CMAKE_INCLUDE_PATH "${_clx_deps}/usr/include" CACHE STRING "dependency prefix headers")
set(CMAKE_LIBRARY_PATH "${_clx_lib}" CACHE STRING "dependency prefix libraries")
# The prefix has no Open MPI: one rank (single or NCCL) only.
set(CLX_WITH_MPI OFF CACHE BOOL "no Open MPI in the dependency prefix")
unset(_clx_lib)
unset(_clx_deps)
EOF
cat > "$DIR/env.sh" <<'EOF'
# Written by scripts/deps_prefix.sh. Source it: . <this file>
# The prefix holds static archives only, so LD_LIBRARY_PATH needs nothing;
# there is no Open MPI in it, so no OPAL_PREFIX either.
CLX_DEPS_PREFIX=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CLX_DEPS_PREFIX
export CMAKE_PREFIX_PATH="$CLX_DEPS_PREFIX/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PKG_CONFIG_PATH="$CLX_DEPS_PREFIX/usr/lib/x86_64-linux-gnu/pkgconfig:$CLX_DEPS_PREFIX/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
EOF

if [ "$WITH_DATA" = 1 ]; then
  mkdir -p "$DIR/data/fashion-mnist"
  cp "$DATA_FROM"/{train,t10k}-{images-idx3,labels-idx1}-ubyte* "$DIR/data/fashion-mnist/"
fi

# ---- size against what one device run can carry ----------------------------------------------
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
prefix_bytes=$(du -sb --exclude=data "$DIR" | cut -f1)
data_bytes=$( [ -d "$DIR/data" ] && du -sb "$DIR/data" | cut -f1 || echo 0)
tree_bytes=$(cd "$REPO" && git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$((prefix_bytes + data_bytes + tree_bytes))
echo "deps_prefix: $DIR"
echo "  packages: $(cut -d' ' -f1 "$DIR/PACKAGES" | paste -sd' ')"
echo "  prefix $(mib "$prefix_bytes") + data $(mib "$data_bytes") + working tree $(mib "$tree_bytes") = $(mib "$total") of 64 MiB"
grep -v '^#' "$DIR/REQUIREMENTS" | sed 's/^/  needs /'
if [ "$total" -gt $((64 * 1048576)) ]; then
  echo "deps_prefix.sh: error: $(mib "$total") is more than a device run carries (64 MiB)" >&2
  exit 1
fi
