#!/bin/sh
# Copy the files the Dockerfile needs but git does not carry into
# images/vllm-cpu/context/ (gitignored).  Idempotent: a file already in place
# with the same content is left alone.
#
#   prepare-context.sh [CONTEXT_DIR]
#       CONTEXT_DIR defaults to images/vllm-cpu/context; other images built on the
#       same torch CPU wheel pass their own (images/xinference-cpu/context).
#
#   context/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
#       the CPU build of torch (the PyPI default would be a CUDA build of several GB)
#   context/ca-certificates.crt
#       this machine's CA bundle: pip inside the build verifies registry TLS against it
#       (used by the build stage only; it is not part of the final image)
#
# Environment overrides:
#   TORCH_WHEEL=/path/to/torch-2.13.0+cpu-...whl   use this wheel instead of asking pip
#   CA_BUNDLE=/path/to/bundle.crt                   default /etc/ssl/certs/ca-certificates.crt
#   PYTHON=python3                                  interpreter whose pip fetches the wheel
set -eu

here=$(cd "$(dirname "$0")" && pwd)
ctx=${1:-"$here/context"}
torch_version=2.13.0+cpu
wheel_name="torch-${torch_version}-cp311-cp311-manylinux_2_28_x86_64.whl"
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
python=${PYTHON:-python3}

mkdir -p "$ctx"

# install SRC as DEST unless DEST already has the same bytes
place() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        echo "up to date: $2"
    else
        cp -f "$1" "$2.tmp" && mv -f "$2.tmp" "$2"
        echo "copied:     $2"
    fi
}

# --- torch CPU wheel ---------------------------------------------------------
# Drop any other torch wheel so the Dockerfile's glob matches exactly one file.
for f in "$ctx"/torch-*.whl; do
    [ -e "$f" ] || continue
    [ "$(basename "$f")" = "$wheel_name" ] || { rm -f "$f"; echo "removed:    $f"; }
done
if [ -n "${TORCH_WHEEL:-}" ]; then
    [ "$(basename "$TORCH_WHEEL")" = "$wheel_name" ] || {
        echo "TORCH_WHEEL must be $wheel_name, got $TORCH_WHEEL" >&2; exit 1; }
    place "$TORCH_WHEEL" "$ctx/$wheel_name"
elif [ -f "$ctx/$wheel_name" ] && "$python" -m zipfile -l "$ctx/$wheel_name" >/dev/null 2>&1; then
    echo "up to date: $ctx/$wheel_name"
else
    # The "+cpu" local version only exists in the CPU wheel index / the machine's
    # find-links dir, so pip cannot fall back to PyPI's CUDA build here.
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$python" -m pip download --no-deps --only-binary=:all: \
        --python-version 3.11 --platform manylinux_2_28_x86_64 \
        -d "$tmp" "torch==${torch_version}"
    [ -f "$tmp/$wheel_name" ] || {
        echo "pip did not produce $wheel_name (got: $(ls "$tmp"))" >&2; exit 1; }
    place "$tmp/$wheel_name" "$ctx/$wheel_name"
fi

# --- CA bundle ---------------------------------------------------------------
[ -s "$ca_bundle" ] || { echo "CA bundle $ca_bundle missing or empty" >&2; exit 1; }
place "$ca_bundle" "$ctx/ca-certificates.crt"

ls -l "$ctx"
