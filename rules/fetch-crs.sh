#!/bin/sh
# Fetches the pinned OWASP CRS release, checks the tarball's SHA-256 against the pin below,
# unpacks it and writes the SHA256SUMS file that build.rs verifies the rules against.
#
# Prints one line on stdout, the CRS_DIR to build with:
#     CRS_DIR=/abs/path/target/crs/v4.25.1
# so `export "$(rules/fetch-crs.sh)"` works. Progress and errors go to stderr.
#
# Usage: rules/fetch-crs.sh [--dest DIR] [--tarball FILE] [--version V --sha256 HEX]
#   --dest DIR      where to unpack (default: target/crs/v<version> under the repository)
#   --tarball FILE  use this local copy of the release tarball instead of downloading it
#                   (offline machines, the Docker build); it is checked all the same
#   --version V --sha256 HEX
#                   verify another release against this checksum (trying out a new pin);
#                   both are required together. The build still compiles only the version
#                   build.rs is pinned to.
#
# Exit status: 0 done (or already done), 1 failure, 2 usage error.
# Needs: POSIX sh, curl or wget, sha256sum, tar with gzip, find, sort, xargs.
#
# Bumping the pin: set CRS_PIN_VERSION and CRS_PIN_SHA256 here, the CRS_VERSION and
# CRS_SHA256 build arguments in the Dockerfile (tests/packaging.rs checks that they agree),
# and CRS_PIN in build.rs. Take the SHA-256 of
#     https://github.com/coreruleset/coreruleset/archive/refs/tags/v<version>.tar.gz
# from a source you trust, and confirm it with `sha256sum` on a copy you downloaded.

set -eu

# The pin. Source archive of tag v4.25.1 (600,591 bytes).
CRS_PIN_VERSION=4.25.1
CRS_PIN_SHA256=0539e66e7627fe71c160a644d8fb7ab6e450d53c9de208be5f95a35c70e1a154

# Written into the unpacked release once it is complete; a re-run that finds it with the same
# version and checksum only re-verifies SHA256SUMS.
STAMP=.fetch-crs

die() {
    echo "fetch-crs: $*" >&2
    exit 1
}

usage() {
    echo "fetch-crs: $*" >&2
    echo "usage: $0 [--dest DIR] [--tarball FILE] [--version V --sha256 HEX]" >&2
    exit 2
}

version=""
sha256=""
dest=""
tarball=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dest) [ $# -ge 2 ] || usage "--dest needs a directory"; dest=$2; shift 2 ;;
        --tarball) [ $# -ge 2 ] || usage "--tarball needs a file"; tarball=$2; shift 2 ;;
        --version) [ $# -ge 2 ] || usage "--version needs a value"; version=$2; shift 2 ;;
        --sha256) [ $# -ge 2 ] || usage "--sha256 needs a value"; sha256=$2; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) usage "unknown argument: $1" ;;
    esac
done

if [ -n "$version" ] || [ -n "$sha256" ]; then
    [ -n "$version" ] && [ -n "$sha256" ] || usage "--version and --sha256 go together"
    echo "fetch-crs: verifying CRS $version against the given checksum, not the pinned one" >&2
else
    version=$CRS_PIN_VERSION
    sha256=$CRS_PIN_SHA256
fi

# Fail closed on anything but a full-length lowercase hex digest (an empty or placeholder pin
# must never let a download through).
case "$version" in
    ''|*[!0-9.]*) usage "version must look like 4.25.1, got '$version'" ;;
esac
if [ "${#sha256}" -ne 64 ]; then
    die "the SHA-256 for CRS $version is not set to 64 hex digits ('$sha256'): refusing to fetch"
fi
case "$sha256" in
    *[!0-9a-f]*) die "the SHA-256 for CRS $version is not lowercase hex ('$sha256'): refusing to fetch" ;;
esac

for tool in sha256sum tar gzip find sort xargs; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required but not installed"
done

repo=$(cd "$(dirname "$0")/.." && pwd)
[ -n "$dest" ] || dest="$repo/target/crs/v$version"
case "$dest" in
    /*) ;;
    *) dest="$(pwd)/$dest" ;;
esac
url="https://github.com/coreruleset/coreruleset/archive/refs/tags/v$version.tar.gz"

# Already fetched: re-verify every file, then print the line again.
if [ -e "$dest" ]; then
    if [ -f "$dest/$STAMP" ] && [ -f "$dest/SHA256SUMS" ] \
        && grep -qx "sha256=$sha256" "$dest/$STAMP"; then
        (cd "$dest" && sha256sum -c --quiet --strict SHA256SUMS >&2) \
            || die "$dest: files differ from its SHA256SUMS (modified?); remove the directory and fetch again"
        echo "fetch-crs: CRS $version already at $dest (verified)" >&2
        echo "CRS_DIR=$dest"
        exit 0
    fi
    die "$dest exists but is not a completed fetch of CRS $version with this checksum; remove it or pass --dest"
fi

parent=$(dirname "$dest")
mkdir -p "$parent" || die "cannot create $parent"
work=$(mktemp -d "$parent/.fetch-crs.XXXXXX") || die "cannot create a temporary directory in $parent"
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM

archive="$work/crs.tar.gz"
if [ -n "$tarball" ]; then
    [ -f "$tarball" ] || die "$tarball: no such file"
    cp "$tarball" "$archive" || die "cannot copy $tarball"
else
    echo "fetch-crs: downloading $url" >&2
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 3 --connect-timeout 20 --max-time 300 -o "$archive" "$url" \
            || die "download failed: $url"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -T 60 -t 3 -O "$archive" "$url" || die "download failed: $url"
    else
        die "curl or wget is required to download $url (or pass --tarball FILE)"
    fi
fi

# The check: nothing is unpacked unless the tarball is the one pinned.
if ! printf '%s  %s\n' "$sha256" "$archive" | sha256sum -c --quiet --strict - >/dev/null 2>&1; then
    got=$(sha256sum "$archive" | cut -d' ' -f1)
    die "SHA-256 mismatch for CRS $version tarball: expected $sha256, got $got; nothing was unpacked"
fi
echo "fetch-crs: SHA-256 verified ($sha256)" >&2

mkdir "$work/unpacked"
tar -xzf "$archive" -C "$work/unpacked" || die "cannot unpack the CRS tarball"
# The archive holds one top-level directory (coreruleset-<version>).
set -- "$work/unpacked"/* "$work/unpacked"/.[!.]*
top=""
for entry in "$@"; do
    [ -e "$entry" ] || continue
    [ -z "$top" ] || die "the CRS tarball has more than one top-level entry"
    top=$entry
done
[ -n "$top" ] && [ -d "$top/rules" ] || die "the CRS tarball has no <top>/rules directory"
grep -q "OWASP_CRS/$version\"" "$top/rules/REQUEST-901-INITIALIZATION.conf" 2>/dev/null \
    || die "the CRS tarball does not declare version $version (SecComponentSignature)"

# Release trees are read-only in places; let the owner delete them (cargo clean).
chmod -R u+w "$top"

# SHA256SUMS over what build.rs compiles (crs-setup.conf.example, rules/), in C-locale order.
(
    cd "$top" \
        && find crs-setup.conf.example rules -type f | LC_ALL=C sort | xargs sha256sum > SHA256SUMS
) || die "cannot write SHA256SUMS"
printf 'version=%s\nsha256=%s\nurl=%s\n' "$version" "$sha256" "$url" > "$top/$STAMP"

mv "$top" "$dest" || die "cannot move the release to $dest"
echo "fetch-crs: CRS $version unpacked at $dest" >&2
echo "CRS_DIR=$dest"
