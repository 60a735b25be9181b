#!/usr/bin/env bash
# The gVisor backend's costs. Run as root from anywhere:  sudo bench/gvisor.sh
#
# Builds nucleus (release) and a busybox bundle annotated org.nucleus.runtime=gvisor
# (ptrace platform), then measures
#   1. cold start of /bin/true: `nucleus run --bundle` under gVisor against `runsc run`
#      of the same bundle with the flags nucleus passes, against `runsc do`, against
#      native nucleus, and the docker-like `nucleus run --runtime gvisor -- /bin/true`;
#   2. a getppid(2) loop and an open/fstat/pread/close loop under gVisor against native
#      nucleus and the host (bench/getppid-loop.c).
# Prints Markdown tables on stdout (progress on stderr), writes them and the hyperfine
# JSON to bench/results/gvisor*, and removes every container, cgroup and state
# directory it made (trap EXIT).
#
# Knobs (environment): RUNS=30 WARMUP=3 PLATFORM=ptrace LOOP_N=20000 FILES_N=2000
#                      NATIVE_LOOP_N=2000000 NATIVE_FILES_N=100000 LOOP_REPS=5
#                      SKIP_BUILD=1 RESULTS=bench/results
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

[[ $EUID -eq 0 ]] || die "run as root (namespaces, cgroups and runsc need it)"

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
PLATFORM=${PLATFORM:-ptrace}
LOOP_N=${LOOP_N:-20000}
FILES_N=${FILES_N:-2000}
NATIVE_LOOP_N=${NATIVE_LOOP_N:-2000000}
NATIVE_FILES_N=${NATIVE_FILES_N:-100000}
LOOP_REPS=${LOOP_REPS:-5}
RESULTS=${RESULTS:-$BENCH_DIR/results}
PFX="gb$$"
CG="/nucleus-bench-$PFX"
export PATH="$PATH:/usr/sbin:/sbin:${HOME:-/root}/.cargo/bin"

WORK=$(mktemp -d /tmp/nucleus-gvisor-bench.XXXXXX)
STATE=$WORK/state
ROOTFS=$WORK/rootfs
mkdir -p "$STATE"/{nucleus,runsc} "$ROOTFS"/{bin,proc,dev,sys,tmp,etc} "$WORK/bin" "$RESULTS"
mount -t tmpfs -o mode=0700 nucleus-gvisor-bench "$STATE"
mkdir -p "$STATE"/{nucleus,runsc}

cleanup() {
    local rc=$? d id
    set +e
    trap - EXIT INT TERM
    log "cleaning up $WORK"
    for d in "$STATE"/nucleus/*/; do
        [[ -d $d ]] || continue
        id=$(basename "$d")
        "$NUCLEUS" --root "$STATE/nucleus" delete --force "$id" >/dev/null 2>&1
    done
    for id in $(runsc --root "$STATE/runsc" list -quiet 2>/dev/null); do
        runsc --root "$STATE/runsc" delete -force "$id" >/dev/null 2>&1
    done
    for d in $(cgroup_dirs_named "nucleus-bench-$PFX"); do rmdir "$d" 2>/dev/null; done
    for d in $(mounts_under "$WORK"); do umount -l "$d" 2>/dev/null; done
    rm -rf "$WORK" 2>/dev/null
    if [[ -n $(cgroup_dirs_named "nucleus-bench-$PFX") ]]; then log "LEFT BEHIND: cgroups"; else log "cleanup verified"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_pkgs hyperfine:hyperfine runsc:runsc jq:jq gcc:gcc busybox:busybox-static
for c in hyperfine runsc jq gcc; do command -v "$c" >/dev/null || die "$c is required"; done

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building nucleus (cargo build --release -p nucleus-cli)"
    (cd "$REPO" && cargo build --release -p nucleus-cli) >&2
fi
cp "$REPO/target/release/nucleus" "$WORK/bin/nucleus"
NUCLEUS=$WORK/bin/nucleus

# ---------------------------------------------------------------- bundles
cp /bin/busybox "$ROOTFS/bin/busybox"
for a in sh true; do ln -s busybox "$ROOTFS/bin/$a"; done
gcc -static -O2 -o "$ROOTFS/bin/getppid-loop" "$BENCH_DIR/getppid-loop.c"
"$NUCLEUS" spec -b "$WORK"
TEMPLATE=$(jq --arg root "$ROOTFS" --arg cg "$CG" '.root.path = $root | .process.terminal = false
    | .linux.cgroupsPath = $cg' "$WORK/config.json")
# make_bundle NAME ARGS_JSON [JQ_FILTER]
make_bundle() {
    mkdir -p "$WORK/$1"
    jq --argjson args "$2" ".process.args = \$args | ${3:-.}" <<<"$TEMPLATE" >"$WORK/$1/config.json"
}
GV=".annotations = {\"org.nucleus.runtime\": \"gvisor\", \"org.nucleus.gvisor.platform\": \"$PLATFORM\"}"
make_bundle native '["/bin/true"]'
make_bundle gvisor '["/bin/true"]' "$GV"
make_bundle native-loop "[\"/bin/getppid-loop\", \"$NATIVE_LOOP_N\"]"
make_bundle native-files "[\"/bin/getppid-loop\", \"files\", \"$NATIVE_FILES_N\"]"
make_bundle gvisor-loop "[\"/bin/getppid-loop\", \"$LOOP_N\"]" "$GV"
make_bundle gvisor-files "[\"/bin/getppid-loop\", \"files\", \"$FILES_N\"]" "$GV"

# The probe (runsc version, platforms, trials) is cached under the state root; do it now.
"$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/gvisor" "$PFX-warm" </dev/null >&2 ||
    die "nucleus cannot run the gVisor bundle"

# ---------------------------------------------------------------- wrappers
# Each row runs through the same /bin/sh wrapper: a unique id, the run, then a delete
# if state was left. runsc gets the flags nucleus gives it (see gvisor.json).
W=$WORK/wrappers
mkdir -p "$W"
mkwrapper() { # NAME RUN_COMMAND
    printf '#!/bin/sh\nread -r u </proc/sys/kernel/random/uuid\nid="%s-$$-${u%%%%-*}"\n%s </dev/null\n' "$PFX" "$2" >"$W/$1"
    chmod +x "$W/$1"
}
RUNSC_FLAGS="--platform=$PLATFORM --network=none --log=$STATE/runsc/log"
mkwrapper wrapper "/bin/true"
mkwrapper nucleus-gvisor "$NUCLEUS --root $STATE/nucleus run --bundle $WORK/gvisor \"\$id\""
mkwrapper runsc-run "runsc --root $STATE/runsc $RUNSC_FLAGS run --bundle $WORK/gvisor \"\$id\""
mkwrapper runsc-do "runsc --root $STATE/runsc $RUNSC_FLAGS do /bin/true"
mkwrapper nucleus-native "$NUCLEUS --root $STATE/nucleus run --bundle $WORK/native \"\$id\""
mkwrapper nucleus-agent-gvisor "$NUCLEUS --root $STATE/nucleus run --runtime gvisor --gvisor-platform $PLATFORM -- /bin/true"
for r in wrapper nucleus-gvisor runsc-run runsc-do nucleus-native nucleus-agent-gvisor; do
    "$W/$r" >/dev/null 2>"$WORK/pre.err" || die "$r fails: $(first_line "$WORK/pre.err")"
done

# ================================================================ 1. cold start
log "table 1: cold start of /bin/true"
args=()
for r in wrapper nucleus-gvisor runsc-run runsc-do nucleus-native nucleus-agent-gvisor; do args+=(-n "$r" "$W/$r"); done
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style basic --export-json "$RESULTS/gvisor-cold-start.json" "${args[@]}" >&2
J=$RESULTS/gvisor-cold-start.json
read -r w_med _ <<<"$(hf_stats "$J" wrapper)"
read -r rr_med _ <<<"$(hf_stats "$J" runsc-run)"
rr_net=$(awk -v a="$rr_med" -v b="$w_med" 'BEGIN { print a - b }')
declare -A LABEL=(
    [nucleus-gvisor]="\`nucleus run --bundle\` (annotation \`org.nucleus.runtime=gvisor\`)"
    [runsc-run]="\`runsc run\` of the same bundle, same flags"
    [runsc-do]="\`runsc do /bin/true\` (host root, overlay)"
    [nucleus-native]="\`nucleus run --bundle\`, native engine"
    [nucleus-agent-gvisor]="\`nucleus run --runtime gvisor -- /bin/true\` (agent mode)"
)
OUT=$WORK/tables.md
{
    echo "### gVisor 1. Cold start of \`/bin/true\` ($PLATFORM platform; hyperfine -N, warmup $WARMUP, $RUNS runs; medians net of the wrapper, $(ms "$w_med") ms)"
    echo
    echo "| command | median | × \`runsc run\` |"
    echo "|---|---:|---:|"
    for r in nucleus-gvisor runsc-run runsc-do nucleus-native nucleus-agent-gvisor; do
        read -r med _ <<<"$(hf_stats "$J" "$r")"
        net=$(awk -v a="$med" -v b="$w_med" 'BEGIN { print a - b }')
        echo "| ${LABEL[$r]} | $(ms "$net") ms | $(ratio "$net" "$rr_net") |"
    done
    echo
} >"$OUT"

# ================================================================ 2. loops
log "table 2: syscall and file loops ($LOOP_REPS repetitions)"
declare -A V
for ((rep = 1; rep <= LOOP_REPS; rep++)); do
    V[host-loop]+="$("$ROOTFS/bin/getppid-loop" "$NATIVE_LOOP_N") "
    V[host-files]+="$(cd "$ROOTFS" && chroot "$ROOTFS" /bin/getppid-loop files "$NATIVE_FILES_N") "
    for b in native-loop native-files gvisor-loop gvisor-files; do
        V[$b]+="$("$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/$b" "$PFX-$b-$rep" </dev/null) "
    done
done
{
    echo "### gVisor 2. Steady-state loops (median of $LOOP_REPS runs; ns per iteration)"
    echo
    echo "| loop | host | native nucleus | nucleus under gVisor ($PLATFORM) | gVisor × native |"
    echo "|---|---:|---:|---:|---:|"
    for l in loop files; do
        h=$(median ${V[host-$l]})
        n=$(median ${V[native-$l]})
        g=$(median ${V[gvisor-$l]})
        label=$([[ $l == loop ]] && echo "getppid(2)" || echo "open/fstat/pread/close of /bin/busybox")
        echo "| $label | $h | $n | $g | $(ratio "$g" "$n") |"
    done
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC'); $(runsc --version | head -1); $("$NUCLEUS" --version 2>/dev/null || echo nucleus) ($(cd "$REPO" && git rev-parse --short HEAD))."
} >>"$OUT"
cp "$OUT" "$RESULTS/gvisor-latest.md"
cat "$OUT"
