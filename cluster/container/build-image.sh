#!/usr/bin/env bash
# Builds the ntk container image here and tests it, from Debian's packages only: podman
# (and buildah) from apt, the Debian 12 base image made with debootstrap from Debian's
# mirror (no Docker Hub), ntk compiled on this host with the Swift runtime linked in
# (--static-swift-stdlib) and copied into the image (cluster/container/Dockerfile, target
# "prebuilt"). Then, inside the image: `ntk --version`, and a 2-rank `ntk gram` under the
# image's own mpirun whose kernel must equal this host's run of the same command to 1e-12.
#
# Usage: cluster/container/build-image.sh [TAG]   (default ntk:latest; as root)
#   NTK_IMAGE_WORK   scratch folder (default /tmp/ntk-image): the base rootfs, the binary
#   NTK_IMAGE_SAVE   also write the image as an OCI archive there (for `apptainer build
#                    ntk.sif oci-archive://FILE`)
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
tag="${1:-ntk:latest}"
work="${NTK_IMAGE_WORK:-/tmp/ntk-image}"
mkdir -p "$work"
[[ $(id -u) -eq 0 ]] || { echo "build-image.sh: run as root (podman's storage and debootstrap)" >&2; exit 77; }

missing=()
for p in podman buildah debootstrap runc; do command -v "$p" >/dev/null || missing+=("$p"); done
if ((${#missing[@]})); then
    echo "build-image.sh: installing ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# What works on machines that limit containers (measured on this one): storage without
# overlay or fuse support (vfs), runc where crun refuses hybrid cgroups, and the process's
# own rlimits (podman's default ulimits need CAP_SYS_RESOURCE).
printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
podman=(podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs)

# The base: Debian 12 from Debian's mirror, imported once.
if ! "${podman[@]}" image exists localhost/ntk-bookworm-base; then
    echo "build-image.sh: debootstrap bookworm (minbase)" >&2
    rm -rf "$work/rootfs"
    debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    tar -C "$work/rootfs" -c . | "${podman[@]}" import - localhost/ntk-bookworm-base >/dev/null
    rm -rf "$work/rootfs"
fi

echo "build-image.sh: ntk with the Swift runtime linked in" >&2
swift build -c release --product ntk --static-swift-stdlib --scratch-path "$work/build" 2>&1 | tail -1 >&2
mkdir -p "$work/binary"
cp "$work/build/release/ntk" "$work/binary/ntk"
if ldd "$work/binary/ntk" | grep -q libswiftCore; then
    echo "build-image.sh: the binary still needs the Swift runtime (libswiftCore)" >&2; exit 1
fi

echo "build-image.sh: podman build $tag" >&2
"${podman[@]}" build --isolation chroot --network host -f cluster/container/Dockerfile --target prebuilt \
    --build-arg BASE=localhost/ntk-bookworm-base --build-context binary="$work/binary" -t "$tag" . >"$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log" >&2; exit 1; }
"${podman[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -F "${tag%%:*}" >&2 || true

# The test: the same 2-rank gram inside the image and on this host.
data="$work/test"
rm -rf "$data"; mkdir -p "$data"
python3 - "$data" <<'PY'
import sys, numpy as np
np.save(sys.argv[1] + "/x.npy", np.random.default_rng(7).standard_normal((200, 12)))
PY
run=("${podman[@]}" run --rm --network none --security-opt label=disable -v "$data:/data" --entrypoint /bin/sh "$tag" -c)
"${run[@]}" "ntk --version"
"${run[@]}" "mpirun --oversubscribe -np 2 ntk gram --data /data/x.npy --depth 2 --width 64 --eigen values --no-checkpoint --quiet --out /data/image"
source scripts/mpi-env.sh
mpirun -q --oversubscribe -np 2 "$work/binary/ntk" gram --data "$data/x.npy" --depth 2 --width 64 --eigen values --no-checkpoint --quiet --out "$data/host"
python3 - "$data" <<'PY'
import sys, numpy as np
d = sys.argv[1]
a, b = np.load(d + "/image/kernel.npy"), np.load(d + "/host/kernel.npy")
off = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
print(f"build-image.sh: the image's kernel against this host's: {off:.2e} relative (tolerance 1e-12)")
sys.exit(0 if off <= 1e-12 else 1)
PY
if [[ -n "${NTK_IMAGE_SAVE:-}" ]]; then
    "${podman[@]}" save --format oci-archive -o "$NTK_IMAGE_SAVE" "$tag"
    echo "build-image.sh: saved $NTK_IMAGE_SAVE (apptainer build ntk.sif oci-archive://$NTK_IMAGE_SAVE)" >&2
fi
echo "build-image.sh: $tag built and tested" >&2
