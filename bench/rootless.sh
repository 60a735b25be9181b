#!/usr/bin/env bash
# Rootless start-up cost. Run as root (it creates a throwaway user):  sudo bench/rootless.sh
#
# Creates an ordinary user with a subordinate id range and a runtime dir, a busybox
# rootfs it owns, and measures in one hyperfine run, as that user:
#   1. rootless `nucleus run -- /bin/true` (the agent sandbox, host-derived root; it
#      joins the user namespace its holder mapped once);
#   1b. the same with the same map given as `--uidmap 0:0:65537`, which maps a new
#      namespace per start through newuidmap/newgidmap (the path before the holder);
#   2. rootless `nucleus run --rootfs ROOTFS /bin/true`;
#   3. rootless `podman --runtime runc run --rm --rootfs ROOTFS /bin/true` (same root;
#      crun, podman's default, refuses hybrid cgroup hosts rootless; skipped with the
#      reason when podman cannot run as that user);
#   4. `bwrap --unshare-all` of the same root, by the same user;
# and, as root, 5. `nucleus run -- /bin/true`.
# Prints a Markdown table with ratios on stdout, writes it and the hyperfine JSON to
# bench/results/rootless*, and removes the user, its files and processes (trap EXIT).
#
# The user's runtime dir and root's state root are tmpfs mounts, as /run/user/UID and
# /run are on a systemd host (here /run and /tmp are on the root disk); STATE_FS=disk
# keeps them on the disk, as runs before 2026-12-03 07:30 did.
#
# Knobs (environment): RUNS=30 WARMUP=3 NUCLEUS=target/release/nucleus SKIP_BUILD=1
#                      STATE_FS=tmpfs|disk
#                      RESULTS=bench/results
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

[[ $EUID -eq 0 ]] || die "run as root (it creates and removes a test user)"

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
RESULTS=${RESULTS:-$BENCH_DIR/results}
export PATH="$PATH:/usr/sbin:/sbin:${HOME:-/root}/.cargo/bin"
ensure_pkgs hyperfine:hyperfine bwrap:bubblewrap newuidmap:uidmap jq:jq busybox:busybox-static

if [[ -z ${NUCLEUS:-} ]]; then
    NUCLEUS=$REPO/target/release/nucleus
    [[ -n ${SKIP_BUILD:-} ]] || (cd "$REPO" && cargo build --release -p nucleus-cli >&2)
fi
[[ -x $NUCLEUS ]] || die "no nucleus binary at $NUCLEUS"

USER_NAME="nbench$$"
WORK=$(mktemp -d /tmp/nucleus-rootless-bench.XXXXXX)
chmod 755 "$WORK"
RANGE="$((3000000 + ($$ % 1000) * 70000))"

cleanup() {
    local rc=$? uid p
    set +e
    trap - EXIT INT TERM
    log "cleaning up $USER_NAME and $WORK"
    uid=$(id -u "$USER_NAME" 2>/dev/null)
    if [[ -n $uid ]]; then
        for p in /proc/[0-9]*; do
            [[ $(stat -c %u "$p" 2>/dev/null) == "$uid" ]] && kill -9 "${p#/proc/}" 2>/dev/null
        done
        usermod --del-subuids "$RANGE-$((RANGE + 65535))" --del-subgids "$RANGE-$((RANGE + 65535))" "$USER_NAME" 2>/dev/null
        userdel -r -f "$USER_NAME" >/dev/null 2>&1
    fi
    for m in "$WORK/run" "$ROOT_STATE"; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
    rm -rf "$WORK" "$ROOT_STATE"
    exit "$rc"
}
ROOT_STATE=$(mktemp -d /tmp/nucleus-rootless-bench-root.XXXXXX)
trap cleanup EXIT INT TERM

useradd -m -s /bin/sh -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$USER_NAME"
usermod --add-subuids "$RANGE-$((RANGE + 65535))" --add-subgids "$RANGE-$((RANGE + 65535))" "$USER_NAME"
U_UID=$(id -u "$USER_NAME")
U_GID=$(id -g "$USER_NAME")
U_HOME=$(getent passwd "$USER_NAME" | cut -d: -f6)
RUNDIR=$WORK/run
ROOTFS=$WORK/rootfs
mkdir -p "$RUNDIR" "$ROOTFS"/{bin,proc,dev,sys,tmp,etc,root}
cp /bin/busybox "$ROOTFS/bin/busybox"
for a in sh true; do ln -sf busybox "$ROOTFS/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\n' >"$ROOTFS/etc/group"
STATE_FS=${STATE_FS:-tmpfs}
if [[ $STATE_FS == tmpfs ]]; then
    mount -t tmpfs -o "mode=700,uid=$U_UID,gid=$U_GID" tmpfs "$RUNDIR"
    mount -t tmpfs -o mode=711 tmpfs "$ROOT_STATE"
fi
chown -R "$U_UID:$U_GID" "$RUNDIR" "$ROOTFS"
chmod 700 "$RUNDIR"

# as_user CMD...: the command line that runs CMD as the test user.
AS_USER="setpriv --reuid $U_UID --regid $U_GID --init-groups env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME=$U_HOME XDG_RUNTIME_DIR=$RUNDIR"

NR="$AS_USER $NUCLEUS run -- /bin/true"
NRM="$AS_USER $NUCLEUS run --uidmap 0:0:65537 -- /bin/true"
NRF="$AS_USER $NUCLEUS run --rootfs $ROOTFS /bin/true"
BW="$AS_USER bwrap --unshare-all --ro-bind $ROOTFS / --proc /proc --dev /dev /bin/true"
NROOT="$NUCLEUS --root $ROOT_STATE run -- /bin/true"
# podman's default runtime, crun, refuses rootless containers on hybrid cgroup hosts
# ("cgroups in hybrid mode not supported"); runc, which ignores cgroup errors rootless, runs.
PODMAN="$AS_USER podman --runtime runc run --rm --network none --rootfs $ROOTFS /bin/true"

cmds=("$NR" "$NRM" "$NRF" "$BW" "$NROOT")
names=("nucleus rootless (agent)" "nucleus rootless (agent), map per start" "nucleus rootless --rootfs" "bwrap --unshare-all (user)" "nucleus as root (agent)")
podman_note=""
if ! command -v podman >/dev/null 2>&1; then
    podman_note="podman is not installed"
elif ! out=$(cd "$U_HOME" && timeout 120 $PODMAN 2>&1); then
    podman_note="rootless podman failed as $USER_NAME: $(printf '%s' "$out" | tail -1 | cut -c1-200)"
else
    cmds+=("$PODMAN")
    names+=("podman --runtime runc run --rm --rootfs (user)")
fi
for c in "${cmds[@]}"; do
    (cd "$U_HOME" && $c) >/dev/null 2>&1 || die "does not run: $c"
done

mkdir -p "$RESULTS"
JSON=$RESULTS/rootless.json
log "hyperfine: $RUNS runs each, warmup $WARMUP"
(cd "$U_HOME" && hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style basic --export-json "$JSON" "${cmds[@]}" >&2)

# A first start makes the holder: `system prune` (no container is left) stops it
# before each run.
FIRST_JSON=$RESULTS/rootless-first.json
(cd "$U_HOME" && hyperfine -N --warmup 1 --runs "$RUNS" --style basic --export-json "$FIRST_JSON" \
    --prepare "$AS_USER $NUCLEUS system prune" "$NR" >&2)

median_of() { hf_stats "$JSON" "$1" | cut -d' ' -f1; }
base=$(median_of "$NR")
bw=$(median_of "$BW")
pd=""
[[ -z $podman_note ]] && pd=$(median_of "$PODMAN")
{
    echo "### Rootless start-up of \`/bin/true\` (hyperfine -N, warmup $WARMUP, $RUNS runs, $(date -u +%F), state on $STATE_FS)"
    echo
    echo "| command | median ms | vs rootless nucleus | rootless nucleus ÷ it |"
    echo "|---|---|---|---|"
    for i in "${!cmds[@]}"; do
        m=$(median_of "${cmds[$i]}")
        echo "| ${names[$i]} | $(ms "$m") | $(ratio "$m" "$base") | $(ratio "$base" "$m") |"
    done
    first=$(hf_stats "$FIRST_JSON" "$NR" | cut -d' ' -f1)
    echo "| nucleus rootless (agent), first start (makes the holder) | $(ms "$first") | $(ratio "$first" "$base") | $(ratio "$base" "$first") |"
    echo
    echo "Targets: rootless nucleus ≤ 0.1× podman, ≤ 1.5× bwrap."
    echo "- vs bwrap: $(ratio "$base" "$bw")"
    if [[ -n $pd ]]; then echo "- vs podman: $(ratio "$base" "$pd")"; else echo "- podman: not measured ($podman_note)"; fi
} | tee "$RESULTS/rootless-latest.md"
