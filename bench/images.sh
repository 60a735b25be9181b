#!/usr/bin/env bash
# Image benchmarks, side by side in one run. As root:  sudo bench/images.sh
#
#   1. pull + unpack of a debootstrap+python3 image from a local docker-registry,
#      cold store: nucleus vs `skopeo copy` + `umoci unpack` vs `podman pull`
#   2. start of /bin/true from an already-pulled image: `nucleus run IMAGE` vs
#      `nucleus run --rootfs` of the same tree vs `podman run --rm` vs `docker run
#      --rm` (a dockerd of its own, started here on a private socket and data root)
#   3. disk used by 50 detached containers of one image
# nucleus's state root is a tmpfs (as /run is); podman's and docker's writable
# layers are on disk under their roots, as they keep them by default.
# Prints Markdown on stdout (progress on stderr), writes bench/results/images.md,
# and removes its registry, containers, mounts and temp dirs (trap EXIT).
#
# Knobs: PULL_RUNS=5 RUNS=30 WARMUP=3 DENSITY_N=50 SKIP_BUILD=1 RESULTS=bench/results
# The python image is the integration tests' fixture (target/tmp/image-fixtures);
# it is built here the same way when missing (debootstrap, about a minute).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
[[ $EUID -eq 0 ]] || die "run as root"

PULL_RUNS=${PULL_RUNS:-5}
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
DENSITY_N=${DENSITY_N:-50}
RESULTS=${RESULTS:-$BENCH_DIR/results}
export PATH="$PATH:/usr/sbin:/sbin:${HOME:-/root}/.cargo/bin"

ensure_pkgs hyperfine:hyperfine docker-registry:docker-registry skopeo:skopeo umoci:umoci \
    debootstrap:debootstrap jq:jq podman:podman
WORK=$(mktemp -d /tmp/nucleus-bench-images.XXXXXX)
REG_PID=""
DOCKERD_PID=""
DOCKER=(docker -H "unix://$WORK/docker.sock")
cleanup() {
    set +e
    if [[ -n $DOCKERD_PID ]]; then
        "${DOCKER[@]}" rm -f $("${DOCKER[@]}" ps -aq 2>/dev/null) >/dev/null 2>&1
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$DOCKERD_PID" 2>/dev/null
        # its own containerd, started under the exec root
        pkill -f "containerd --config $WORK/docker-exec" 2>/dev/null
    fi
    if [[ -x $WORK/nucleus ]]; then
        for id in $("$WORK/nucleus" --root "$WORK/state" --data-root "$WORK/n-run" ps -a -q 2>/dev/null); do
            "$WORK/nucleus" --root "$WORK/state" --data-root "$WORK/n-run" rm -f "$id" >/dev/null 2>&1
        done
    fi
    podman --root "$WORK/p-run" --runroot "$WORK/p-runroot" rm -af >/dev/null 2>&1
    podman --root "$WORK/p-run" --runroot "$WORK/p-runroot" system reset -f >/dev/null 2>&1
    [[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
    grep -o " $WORK[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
# nucleus's state root (bundles, and each image container's upper and work
# directories) on tmpfs, as /run/nucleus is on a standard host; bench/run.sh
# does the same. The image store stays on disk, as /var/lib/nucleus.
mkdir -p "$WORK/state"
mount -t tmpfs -o mode=0700 nucleus-bench-images "$WORK/state"

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building target/release/nucleus"
    (cd "$REPO" && cargo build --release -q -p nucleus-cli)
fi
cp "$REPO/target/release/nucleus" "$WORK/nucleus"
N=$WORK/nucleus

# The python image, as the integration tests build it.
LAYOUT=$REPO/target/tmp/image-fixtures/python-v1/oci
if [[ ! -f $REPO/target/tmp/image-fixtures/python-v1/done ]]; then
    log "building the python image (debootstrap minbase + python3)"
    (cd "$REPO" && cargo test -q -p nucleus-cli --test images python >/dev/null)
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/registry"
cat >"$WORK/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
REF=127.0.0.1:$PORT/bench/python:3
skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:py" "docker://$REF"
SIZE=$(skopeo inspect --tls-verify=false --raw "docker://$REF" | jq '[.layers[].size] | add')
log "image $REF: $(awk -v b="$SIZE" 'BEGIN { printf "%.1f MB", b / 1e6 }') compressed"

HF=(hyperfine -N --style basic)
# 1. Pull + unpack, cold store each time.
log "1. pull + unpack"
"${HF[@]}" --runs "$PULL_RUNS" --export-json "$WORK/pull.json" \
    --prepare "rm -rf $WORK/n-pull $WORK/s $WORK/b" \
    -n nucleus "$N --data-root $WORK/n-pull pull -q $REF" \
    -n skopeo+umoci "sh -c 'skopeo copy -q --src-tls-verify=false docker://$REF oci:$WORK/s:py && umoci unpack --image $WORK/s:py $WORK/b >/dev/null'" \
    >&2
PODMAN_PULL=""
if podman --root "$WORK/p-pull" --runroot "$WORK/p-pullrun" pull -q --tls-verify=false "$REF" >/dev/null 2>"$WORK/podman.err"; then
    podman --root "$WORK/p-pull" --runroot "$WORK/p-pullrun" system reset -f >/dev/null 2>&1
    "${HF[@]}" --runs "$PULL_RUNS" --export-json "$WORK/pull-podman.json" \
        --prepare "sh -c 'podman --root $WORK/p-pull --runroot $WORK/p-pullrun system reset -f >/dev/null 2>&1; rm -rf $WORK/p-pull $WORK/p-pullrun'" \
        -n podman "podman --root $WORK/p-pull --runroot $WORK/p-pullrun pull -q --tls-verify=false $REF" >&2
    PODMAN_PULL=$(hf_stats "$WORK/pull-podman.json" podman | cut -d' ' -f1)
    podman --root "$WORK/p-pull" --runroot "$WORK/p-pullrun" system reset -f >/dev/null 2>&1
else
    log "podman pull failed: $(first_line "$WORK/podman.err")"
fi
P_N=$(hf_stats "$WORK/pull.json" nucleus | cut -d' ' -f1)
P_SU=$(hf_stats "$WORK/pull.json" skopeo+umoci | cut -d' ' -f1)
FASTER=$P_SU
[[ -n $PODMAN_PULL ]] && FASTER=$(awk -v a="$P_SU" -v b="$PODMAN_PULL" 'BEGIN { print (a < b) ? a : b }')

# 2. Start of /bin/true from an already-pulled image.
log "2. start from an image"
"$N" --data-root "$WORK/n-run" pull -q "$REF" >/dev/null
umoci unpack --image "$LAYOUT:py" "$WORK/tree" >/dev/null
"${HF[@]}" --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/start.json" \
    -n "nucleus run IMAGE" "$N --root $WORK/state --data-root $WORK/n-run run $REF -- /bin/true" \
    -n "nucleus run --rootfs" "$N --root $WORK/state --data-root $WORK/n-run run --rootfs $WORK/tree/rootfs -- /bin/true" \
    >&2
S_IMG=$(hf_stats "$WORK/start.json" "nucleus run IMAGE" | cut -d' ' -f1)
S_DIR=$(hf_stats "$WORK/start.json" "nucleus run --rootfs" | cut -d' ' -f1)
S_POD=""
PODMAN_RUN=(podman --root "$WORK/p-run" --runroot "$WORK/p-runroot" --runtime runc --cgroup-manager cgroupfs --events-backend none)
# Podman asks for RLIMIT_NOFILE 1048576 and RLIMIT_NPROC 32768 by default; without
# CAP_SYS_RESOURCE (this VM) raising a hard limit fails, so ask for what we have.
# (crun refuses hybrid cgroups here, so it stays runc.)
NOFILE=$(ulimit -Hn)
NPROC=$(ulimit -Hu)
[[ $NPROC == unlimited || $NPROC -gt 32768 ]] && NPROC=32768
ULIMITS="--ulimit nofile=$NOFILE:$NOFILE --ulimit nproc=$NPROC:$NPROC"
# shellcheck disable=SC2086 # ULIMITS is words on purpose
if "${PODMAN_RUN[@]}" pull -q --tls-verify=false "$REF" >/dev/null 2>"$WORK/podman.err" &&
    "${PODMAN_RUN[@]}" run --rm $ULIMITS --network none "$REF" /bin/true 2>"$WORK/podman.err"; then
    "${HF[@]}" --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/start-podman.json" \
        -n podman "${PODMAN_RUN[*]} run --rm $ULIMITS --network none $REF /bin/true" >&2
    S_POD=$(hf_stats "$WORK/start-podman.json" podman | cut -d' ' -f1)
else
    log "podman run failed: $(first_line "$WORK/podman.err")"
fi
S_DOCKER=""
DOCKER_NOTE="dockerd not installed"
if command -v dockerd >/dev/null; then
    # No bridge or iptables: the runs use --network none, as the others do.
    dockerd --data-root "$WORK/docker" --exec-root "$WORK/docker-exec" -H "unix://$WORK/docker.sock" \
        --pidfile "$WORK/docker.pid" --bridge=none --iptables=false --ip6tables=false \
        --containerd-namespace "nbench$$" --containerd-plugins-namespace "nbench$$-p" \
        >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 150); do "${DOCKER[@]}" info >/dev/null 2>&1 && break; sleep 0.2; done
    # shellcheck disable=SC2086 # ULIMITS is words on purpose
    if "${DOCKER[@]}" pull -q "$REF" >/dev/null 2>"$WORK/docker.err" &&
        "${DOCKER[@]}" run --rm $ULIMITS --network none "$REF" /bin/true 2>"$WORK/docker.err"; then
        "${HF[@]}" --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/start-docker.json" \
            -n docker "${DOCKER[*]} run --rm $ULIMITS --network none $REF /bin/true" >&2
        S_DOCKER=$(hf_stats "$WORK/start-docker.json" docker | cut -d' ' -f1)
    else
        DOCKER_NOTE="failed: $(first_line "$WORK/docker.err")"
        log "docker run $DOCKER_NOTE"
    fi
fi

# 3. Disk used by DENSITY_N containers of one image.
log "3. disk for $DENSITY_N containers"
image_kb=$(du -skx "$WORK/n-run" | cut -f1)
before_kb=$(du -skx "$WORK/state" 2>/dev/null | cut -f1)
for i in $(seq "$DENSITY_N"); do
    "$N" --root "$WORK/state" --data-root "$WORK/n-run" run -d --name "d$i" "$REF" -- /bin/sh -c 'sleep 600' >/dev/null
done
after_data_kb=$(du -skx "$WORK/n-run" | cut -f1)
upper_kb=$(du -skx "$WORK/state/.image-roots"/*/upper "$WORK/state/.image-roots"/*/work 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
state_kb=$(du -skx --exclude=merged "$WORK/state" | cut -f1)
for i in $(seq "$DENSITY_N"); do "$N" --root "$WORK/state" --data-root "$WORK/n-run" rm -f "d$i" >/dev/null; done
left=$(find "$WORK/state/.image-roots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)

mkdir -p "$RESULTS"
{
    echo "### Images ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r))"
    echo
    echo "Image: debootstrap bookworm minbase + python3, 2 layers, $(awk -v b="$SIZE" 'BEGIN { printf "%.1f MB", b / 1e6 }') compressed, from docker-registry on 127.0.0.1."
    echo
    echo "| pull + unpack, cold store ($PULL_RUNS runs) | median | × faster of the others |"
    echo "|---|---:|---:|"
    echo "| nucleus pull | $(ms "$P_N") ms | $(ratio "$P_N" "$FASTER") |"
    echo "| skopeo copy + umoci unpack | $(ms "$P_SU") ms | $(ratio "$P_SU" "$FASTER") |"
    if [[ -n $PODMAN_PULL ]]; then echo "| podman pull | $(ms "$PODMAN_PULL") ms | $(ratio "$PODMAN_PULL" "$FASTER") |"; else echo "| podman pull | failed: $(first_line "$WORK/podman.err") | |"; fi
    echo
    vs() { [[ -n $2 ]] && ratio "$1" "$2" || echo –; }
    echo "| start of \`/bin/true\` ($RUNS runs after $WARMUP) | median | × run --rootfs | × podman | × docker |"
    echo "|---|---:|---:|---:|---:|"
    echo "| nucleus run IMAGE | $(ms "$S_IMG") ms | $(ratio "$S_IMG" "$S_DIR") | $(vs "$S_IMG" "$S_POD") | $(vs "$S_IMG" "$S_DOCKER") |"
    echo "| nucleus run --rootfs (same tree) | $(ms "$S_DIR") ms | 1.00× | $(vs "$S_DIR" "$S_POD") | $(vs "$S_DIR" "$S_DOCKER") |"
    if [[ -n $S_POD ]]; then echo "| podman run --rm (runc) | $(ms "$S_POD") ms | $(ratio "$S_POD" "$S_DIR") | 1.00× | $(vs "$S_POD" "$S_DOCKER") |"; else echo "| podman run --rm | failed: $(first_line "$WORK/podman.err") | | | |"; fi
    if [[ -n $S_DOCKER ]]; then echo "| docker run --rm (dockerd $("${DOCKER[@]}" version --format '{{.Server.Version}}' 2>/dev/null)) | $(ms "$S_DOCKER") ms | $(ratio "$S_DOCKER" "$S_DIR") | $(vs "$S_DOCKER" "$S_POD") | 1.00× |"; else echo "| docker run --rm | $DOCKER_NOTE | | | |"; fi
    echo
    echo "| disk for $DENSITY_N detached containers of the image | KiB |"
    echo "|---|---:|"
    echo "| image store (blobs + layers), before | $image_kb |"
    echo "| image store, with the containers | $after_data_kb |"
    echo "| upper + work directories, all containers | $upper_kb |"
    echo "| state root (bundles, upper, work; not the overlays), all containers | $((state_kb - ${before_kb:-0})) |"
    echo "| image roots left after \`rm\` | $left |"
} | tee "$RESULTS/images.md"
