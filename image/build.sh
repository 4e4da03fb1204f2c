#!/usr/bin/env bash
# Build the modelfleet image without a daemon: mmdebstrap makes a Debian root filesystem,
# pip fetches the locked wheels (hash-checked), buildah builds the Dockerfile with chroot
# isolation and vfs storage, and the result is saved as an OCI archive.
#
#   image/build.sh IMAGE_NAME OUT_ARCHIVE
#
# Needs root and Debian's buildah and mmdebstrap (`apt-get install buildah mmdebstrap`).
# The root filesystem is kept in build/image/ and reused while this script is unchanged:
# it is the slow step (about two minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${1:?image name, e.g. localhost/modelfleet:0.1.0}
ARCHIVE=${2:?output OCI archive, e.g. build/modelfleet-image.oci.tar}
PYTHON=${PYTHON:-.venv/bin/python}
SUITE=bookworm
PIP_VERSION=25.3
CONTEXT=build/image
BUILDAH=(buildah --storage-driver vfs)

for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "image/build.sh needs $tool: apt-get install $tool" >&2; exit 3; }
done
[ "$(id -u)" = 0 ] || { echo "image/build.sh runs as root (buildah without a daemon)" >&2; exit 3; }

mkdir -p "$CONTEXT"
started=$SECONDS

# 1. Debian: python3 and the CA certificates (Prometheus and the API server over TLS).
stamp=$(sha256sum image/build.sh | cut -c1-16)
if [ ! -s "$CONTEXT/rootfs.tar" ] || [ "$(cat "$CONTEXT/rootfs.stamp" 2>/dev/null)" != "$stamp" ]; then
  mmdebstrap --variant=minbase --mode=root \
    --include=python3,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    "$SUITE" "$CONTEXT/rootfs.new.tar"  # the .tar name makes mmdebstrap write a tarball
  mv "$CONTEXT/rootfs.new.tar" "$CONTEXT/rootfs.tar"
  echo "$stamp" > "$CONTEXT/rootfs.stamp"
fi
echo "image: root filesystem ready after $((SECONDS - started)) s"

# 2. Wheels: the lock's (hashes checked), modelfleet's from the product's sources alone.
rm -rf "$CONTEXT/wheels" "$CONTEXT/product"
mkdir -p "$CONTEXT/wheels" "$CONTEXT/product/operator"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
  --only-binary :all: --platform manylinux_2_31_x86_64 --platform manylinux2014_x86_64 \
  --platform linux_x86_64 --python-version 3.11 --implementation cp \
  --require-hashes -r requirements.lock -d "$CONTEXT/wheels"
cp requirements.lock "$CONTEXT/wheels/requirements.lock"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
  --only-binary :all: "pip==$PIP_VERSION" -d "$CONTEXT/wheels"
mv "$CONTEXT"/wheels/pip-*.whl "$CONTEXT/wheels/pip.whl"
cp pyproject.toml README.md "$CONTEXT/product/"
cp -r operator/modelfleet "$CONTEXT/product/operator/"
find "$CONTEXT/product" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps \
  -w "$CONTEXT/wheels" "$CONTEXT/product"
echo "image: wheels ready after $((SECONDS - started)) s"

# 3. The image, then an OCI archive of it (what a registry push or `podman load` takes).
"${BUILDAH[@]}" bud --quiet --isolation chroot --layers=false -t "$IMAGE" -f Dockerfile .
rm -f "$ARCHIVE"
"${BUILDAH[@]}" push --quiet "$IMAGE" "oci-archive:$ARCHIVE:$IMAGE"
# vfs keeps a full copy per layer: drop what an earlier build of the same name left.
"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
echo "image: $IMAGE built in $((SECONDS - started)) s, saved as $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
