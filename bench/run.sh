#!/usr/bin/env bash
# nucleus benchmark suite. Run as root from anywhere:  sudo bench/run.sh
#
# Builds nucleus (release), builds a busybox OCI bundle in a temp dir, measures
#   1. cold start of /bin/true (unshare floor, bwrap, runc, crun, runsc, nucleus)
#   2. exec latency into a running container (nsenter floor, runc, nucleus)
#   3. steady-state getppid(2) cost with and without a seccomp profile
#   4. density: 200 idle detached containers (start, memory, removal, leftovers)
#   5. the runtime's own peak RSS while running a container
# prints Markdown tables on stdout (progress goes to stderr), writes them and the
# raw hyperfine JSON to bench/results/, and removes every container, mount,
# cgroup and state directory it made (trap EXIT).
#
# Knobs (environment): RUNS=100 WARMUP=10 DENSITY_N=200
#                      LOOP_N=5000000 LOOP_REPS=7 RSS_REPS=10 RESULTS=bench/results
#                      SKIP_BUILD=1 (use the existing target/release/nucleus)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

[[ $EUID -eq 0 ]] || die "run as root (namespaces, cgroups and runtimes need it)"

RUNS=${RUNS:-100}
WARMUP=${WARMUP:-10}
DENSITY_N=${DENSITY_N:-200}
LOOP_N=${LOOP_N:-5000000}
LOOP_REPS=${LOOP_REPS:-7}
FILES_N=${FILES_N:-200000}
RSS_REPS=${RSS_REPS:-10}
RESULTS=${RESULTS:-$BENCH_DIR/results}
PFX="nb$$"          # every container id and cgroup of this run starts with this
export PATH="$PATH:/usr/sbin:/sbin:${HOME:-/root}/.cargo/bin"

WORK=$(mktemp -d /tmp/nucleus-bench.XXXXXX)
STATE=$WORK/state   # one --root per runtime: $STATE/<runtime>
W=$WORK/wrappers
ROOTFS=$WORK/bundle/rootfs
NOTES=$WORK/notes   # anomalies found along the way, printed at the end
mkdir -p "$STATE" "$W" "$ROOTFS" "$RESULTS"
# Runtime state lives on tmpfs, as /run does on a standard host (runc's and nucleus's
# default roots are under /run). Some VMs have /run on disk; STATE_TMPFS=0 keeps the
# state on the temp dir's filesystem instead.
if [[ ${STATE_TMPFS:-1} == 1 ]]; then
    mount -t tmpfs -o mode=0700 nucleus-bench-state "$STATE"
fi
mkdir -p "$STATE"/{nucleus,runc,crun,runsc}
: >"$NOTES"
: >"$WORK/pids"

note() { log "NOTE: $*"; echo "- $*" >>"$NOTES"; }

# ---------------------------------------------------------------- cleanup
cleanup() {
    local rc=$? id m d pid
    set +e
    trap - EXIT INT TERM
    log "cleaning up $WORK"
    if [[ -x ${NUCLEUS:-} ]]; then
        for d in "$STATE"/nucleus/*/; do
            [[ -d $d ]] || continue
            id=$(basename "$d")
            "$NUCLEUS" --root "$STATE/nucleus" delete --force "$id" >/dev/null 2>&1
        done
    fi
    if command -v runc >/dev/null; then
        for id in $(runc --root "$STATE/runc" list -q 2>/dev/null); do
            runc --root "$STATE/runc" delete --force "$id" >/dev/null 2>&1
        done
    fi
    if command -v crun >/dev/null; then
        for id in $(crun --root "$STATE/crun" list -q 2>/dev/null); do
            crun --root "$STATE/crun" delete --force "$id" >/dev/null 2>&1
        done
    fi
    if command -v runsc >/dev/null; then
        for id in $(runsc --root "$STATE/runsc" list -quiet 2>/dev/null); do
            runsc --root "$STATE/runsc" delete -force "$id" >/dev/null 2>&1
        done
    fi
    # container processes this run started (recorded by pid), if any survived
    while read -r pid; do
        [[ -n $pid ]] && alive "$pid" && kill -KILL "$pid" 2>/dev/null
    done <"$WORK/pids"
    for m in $(mounts_under "$WORK"); do umount -l "$m" 2>/dev/null; done
    for d in $(cgroup_dirs_named "$PFX"); do rmdir "$d" 2>/dev/null; done
    rm -rf "$WORK"
    # final verification, on stderr
    local left
    left=$( { cgroup_dirs_named "$PFX"; mounts_under "$WORK"; [[ -e $WORK ]] && echo "$WORK"; } | sort -u)
    if [[ -n $left ]]; then log "LEFT BEHIND after cleanup:"; printf '  %s\n' $left >&2; else log "cleanup verified: nothing left"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- dependencies
ensure_pkgs hyperfine:hyperfine runc:runc crun:crun bwrap:bubblewrap busybox:busybox-static \
    unshare:util-linux nsenter:util-linux jq:jq gcc:gcc /usr/bin/time:time
# the rootfs needs a static busybox (Debian's busybox-static puts it at /bin/busybox)
if [[ ! -x /bin/busybox ]] || ldd /bin/busybox >/dev/null 2>&1; then
    log "installing busybox-static"
    DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >/dev/null 2>&1 || true
fi
# gcc -static needs libc.a
[[ -n $(find /usr/lib -name libc.a -print -quit 2>/dev/null) ]] ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y libc6-dev >/dev/null 2>&1 || true
ensure_pkgs runsc:runsc   # gVisor; may not exist in the distribution
for c in hyperfine runc bwrap unshare nsenter jq gcc /usr/bin/time; do
    command -v "$c" >/dev/null || die "$c is required and could not be installed"
done
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || BUSYBOX=$(command -v busybox)

# ---------------------------------------------------------------- build nucleus
if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building nucleus (cargo build --release -p nucleus-cli)"
    (cd "$REPO" && cargo build --release -p nucleus-cli) >&2
fi
[[ -x $REPO/target/release/nucleus ]] || die "target/release/nucleus missing"
# A private copy: concurrent rebuilds can't swap it mid-run, and its processes are
# identifiable by executable path.
mkdir -p "$WORK/bin"
cp "$REPO/target/release/nucleus" "$WORK/bin/nucleus"
NUCLEUS=$WORK/bin/nucleus
NUCLEUS_VERSION="$("$NUCLEUS" --version 2>/dev/null || echo nucleus) ($(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && [[ -n $(git status --porcelain 2>/dev/null | grep -v '^?? bench/') ]] && echo ', dirty tree' || true))"

# ---------------------------------------------------------------- bundles
log "building the busybox bundle in $WORK"
mkdir -p "$ROOTFS"/{bin,proc,dev,sys,tmp,etc}
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
for a in $("$BUSYBOX" --list); do
    [[ $a == busybox || -e $ROOTFS/bin/$a ]] || ln -s busybox "$ROOTFS/bin/$a"
done
gcc -static -O2 -o "$ROOTFS/bin/getppid-loop" "$BENCH_DIR/getppid-loop.c"
gcc -O2 -o "$WORK/bin/kernel-costs" "$BENCH_DIR/kernel-costs.c"

# Seccomp profile: every x86_64 syscall the kernel headers know, minus the ones a
# locked-down sandbox should not have (module/kexec/mount/namespace/keyring/ptrace/
# bpf/perf/clock/swap/reboot/obsolete), default action ERRNO(EPERM).
DENY='_sysctl acct add_key adjtimex afs_syscall bpf clock_adjtime clock_settime create_module
delete_module epoll_ctl_old epoll_wait_old finit_module fsconfig fsmount fsopen fspick
get_kernel_syms get_mempolicy getpmsg init_module ioperm iopl kcmp kexec_file_load kexec_load
keyctl lookup_dcookie mbind memfd_secret migrate_pages mount mount_setattr move_mount move_pages
name_to_handle_at nfsservctl open_by_handle_at open_tree perf_event_open pivot_root
process_madvise process_vm_readv process_vm_writev ptrace putpmsg query_module quotactl
quotactl_fd reboot request_key security set_mempolicy set_mempolicy_home_node setdomainname
sethostname setns settimeofday swapoff swapon syslog tuxcall umount2 unshare uselib userfaultfd
ustat vhangup vserver'
UNISTD=$(echo '#include <asm/unistd_64.h>' | gcc -E -dM - 2>/dev/null | awk '/^#define __NR_/ { sub("__NR_", "", $2); print $2 }' | sort -u)
[[ -n $UNISTD ]] || die "could not read the syscall list from <asm/unistd_64.h>"
ALLOW=$(comm -23 <(echo "$UNISTD") <(tr -s ' \n' '\n' <<<"$DENY" | sort -u))
ALLOW_N=$(wc -l <<<"$ALLOW")
SECCOMP=$(jq -nc '{
    defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: 1,
    architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    syscalls: [{names: $ARGS.positional, action: "SCMP_ACT_ALLOW"}]}' --args $ALLOW)
# Same profile, but getppid allowed only behind an argument comparison, which the
# kernel's per-syscall allow cache (5.11+) cannot short-circuit: shows the BPF cost.
SECCOMP_ARGS=$(jq -c '.syscalls[0].names -= ["getppid"] |
    .syscalls += [{names: ["getppid"], action: "SCMP_ACT_ALLOW",
                   args: [{index: 0, value: 0, op: "SCMP_CMP_EQ"}]}]' <<<"$SECCOMP")
# The smallest filter there is: allow everything. What it costs is what any seccomp
# filter costs on this kernel, whatever its rules: the syscall entry slow path.
SECCOMP_ALLOW_ALL='{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}'

"$NUCLEUS" spec -b "$WORK/bundle"
TEMPLATE=$(jq --arg root "$ROOTFS" '.root.path = $root | .process.terminal = false' "$WORK/bundle/config.json")
# make_bundle NAME ARGS_JSON [JQ_FILTER [SECCOMP_JSON]]: a bundle sharing the (read-only)
# rootfs; the filter sees the profile as $sc
make_bundle() {
    mkdir -p "$WORK/$1"
    jq --argjson args "$2" --argjson sc "${4:-null}" ".process.args = \$args | ${3:-.}" <<<"$TEMPLATE" >"$WORK/$1/config.json.tmp"
    mv "$WORK/$1/config.json.tmp" "$WORK/$1/config.json"
}
make_bundle bundle '["/bin/true"]' '.root.path = "rootfs"'
# crun 1.8 (Debian 12) rejects ociVersion 1.2.0 before anything else; give it 1.0.2
make_bundle bundle-crun '["/bin/true"]' '.ociVersion = "1.0.2"'
make_bundle bundle-sleep '["/bin/sleep", "1000"]'
make_bundle bundle-idle '["/bin/sleep", "100000"]'
make_bundle bundle-loop "[\"/bin/getppid-loop\", \"$LOOP_N\"]"
make_bundle bundle-loop-seccomp "[\"/bin/getppid-loop\", \"$LOOP_N\"]" ".linux.seccomp = \$sc" "$SECCOMP"
make_bundle bundle-loop-seccomp-args "[\"/bin/getppid-loop\", \"$LOOP_N\"]" ".linux.seccomp = \$sc" "$SECCOMP_ARGS"
make_bundle bundle-loop-seccomp-allowall "[\"/bin/getppid-loop\", \"$LOOP_N\"]" ".linux.seccomp = \$sc" "$SECCOMP_ALLOW_ALL"
make_bundle bundle-files "[\"/bin/getppid-loop\", \"files\", \"$FILES_N\"]"
make_bundle bundle-files-seccomp "[\"/bin/getppid-loop\", \"files\", \"$FILES_N\"]" ".linux.seccomp = \$sc" "$SECCOMP"
make_bundle bundle-probe '["/bin/getppid-loop", "probe"]'
make_bundle bundle-probe-seccomp '["/bin/getppid-loop", "probe"]' ".linux.seccomp = \$sc" "$SECCOMP"
B=$WORK/bundle
# The agent-mode default profile as nucleus generates it, to measure it alone
# (without Landlock) on the same bundle as the other profiles.
AGENT_SC=""
if "$NUCLEUS" --root "$WORK/profile-root" run --keep --name agent-profile -- /bin/true </dev/null >/dev/null 2>&1; then
    AGENT_SC=$(jq -c '.linux.seccomp // empty' "$WORK"/profile-root/.bundles/*/config.json 2>/dev/null | head -1)
    "$NUCLEUS" --root "$WORK/profile-root" rm -f agent-profile >/dev/null 2>&1
fi
rm -rf "$WORK/profile-root"
if [[ -n $AGENT_SC ]]; then
    make_bundle bundle-loop-agentprofile "[\"/bin/getppid-loop\", \"$LOOP_N\"]" ".linux.seccomp = \$sc" "$AGENT_SC"
    make_bundle bundle-files-agentprofile "[\"/bin/getppid-loop\", \"files\", \"$FILES_N\"]" ".linux.seccomp = \$sc" "$AGENT_SC"
fi

# ---------------------------------------------------------------- wrappers
# Every measured command runs through the same tiny /bin/sh wrapper: make a unique
# id (no fork: the uuid is read by a builtin), run, delete if state was left.
# The "wrapper" row measures that shape around /bin/true.
mkwrapper() { # NAME STATE_DIR_OR_EMPTY RUN_COMMAND [DELETE_COMMAND]
    cat >"$W/$1" <<EOF
#!/bin/sh
read -r u </proc/sys/kernel/random/uuid
id="$PFX-\$\$-\${u%%-*}"
$3 </dev/null
rc=\$?
if [ -e "${2:-$WORK/none}/\$id" ]; then ${4:-:} "\$id" >/dev/null 2>&1; fi
exit \$rc
EOF
    chmod +x "$W/$1"
}
mkwrapper wrapper "" "/bin/true"
mkwrapper unshare "" "unshare --pid --net --ipc --uts --mount --cgroup --fork --root $ROOTFS /bin/true"
mkwrapper bwrap "" "bwrap --unshare-all --bind $ROOTFS / --proc /proc --dev /dev /bin/true"
mkwrapper runc "$STATE/runc" "runc --root $STATE/runc run --bundle $B \"\$id\"" "runc --root $STATE/runc delete --force"
mkwrapper crun "$STATE/crun" "crun --root $STATE/crun run --bundle $WORK/bundle-crun \"\$id\"" "crun --root $STATE/crun delete --force"
mkwrapper runsc "" "runsc --root $STATE/runsc --platform=ptrace --network=none run --bundle $B \"\$id\""
mkwrapper nucleus "$STATE/nucleus" "$NUCLEUS --root $STATE/nucleus run --bundle $B \"\$id\"" "$NUCLEUS --root $STATE/nucleus delete --force"
mkwrapper nucleus-agent "$STATE/nucleus" "$NUCLEUS --root $STATE/nucleus run -- /bin/true" "$NUCLEUS --root $STATE/nucleus delete --force"
mkwrapper nucleus-agent-rootfs "$STATE/nucleus" "$NUCLEUS --root $STATE/nucleus run --rootfs $ROOTFS -- /bin/true" "$NUCLEUS --root $STATE/nucleus delete --force"

declare -A STATUS   # runtime -> "" (ok) or reason it is not measured
preflight() { # NAME — run the wrapper once; record why it fails
    local err=$WORK/preflight-$1.err
    if "$W/$1" >/dev/null 2>"$err"; then STATUS[$1]=""; else STATUS[$1]="fails: $(first_line "$err")"; fi
}
for r in wrapper unshare bwrap runc nucleus; do preflight "$r"; done
if command -v crun >/dev/null; then
    preflight crun
    [[ ${STATUS[crun]} == *"hybrid mode not supported"* ]] && STATUS[crun]="refuses: cgroups in hybrid mode not supported"
else STATUS[crun]="not installed"; fi
if command -v runsc >/dev/null; then preflight runsc; else STATUS[runsc]="not installed (no runsc package)"; fi
if "$NUCLEUS" run --help 2>&1 | grep -q -- '--rootfs'; then
    for r in nucleus-agent nucleus-agent-rootfs; do
        preflight "$r"
        [[ -z ${STATUS[$r]} ]] || STATUS[$r]="not available ($(first_line "$WORK/preflight-$r.err"))"
    done
else
    STATUS[nucleus-agent]="not available (\`nucleus run\` has no \`--rootfs\`: agent mode not implemented)"
    STATUS[nucleus-agent-rootfs]=${STATUS[nucleus-agent]}
fi
for r in "${!STATUS[@]}"; do [[ -n ${STATUS[$r]} ]] && log "$r: ${STATUS[$r]}"; done
[[ -z ${STATUS[nucleus]} ]] || die "nucleus cannot run the bundle: ${STATUS[nucleus]}"

# Agent mode names its cgroups nucleus-<generated id>, not after our prefix: compare
# against a snapshot (other nucleus users on the host may show up here too).
cgroup_dirs_named nucleus- | sort >"$WORK/cg-before"
# leftover_check LABEL — containers, mounts or cgroups of this run still present
leftover_check() {
    local new
    new=$(cgroup_dirs_named nucleus- | sort | comm -13 "$WORK/cg-before" -)
    [[ -z $new ]] || note "$1: $(wc -l <<<"$new") new nucleus-* cgroup dir(s) (agent mode, or another nucleus user on this host), e.g. $(head -1 <<<"$new")"
    local n c m
    n=$(find "$STATE/nucleus" -mindepth 1 -maxdepth 1 ! -name '.*' | wc -l)
    ((n == 0)) || note "$1: $n nucleus state dir(s) left: $(ls "$STATE/nucleus" | head -3 | tr '\n' ' ')"
    n=$(runc --root "$STATE/runc" list -q 2>/dev/null | wc -l)
    ((n == 0)) || note "$1: $n runc container(s) left"
    if command -v runsc >/dev/null; then
        n=$(runsc --root "$STATE/runsc" list -quiet 2>/dev/null | wc -l)
        ((n == 0)) || note "$1: $n runsc container(s) left"
    fi
    c=$(cgroup_dirs_named "$PFX" | wc -l)
    ((c == 0)) || note "$1: $c cgroup dir(s) named $PFX* left, e.g. $(cgroup_dirs_named "$PFX" | head -1)"
    m=$(mounts_under "$WORK" | { grep -vxF "$STATE" || true; } | wc -l)
    ((m == 0)) || note "$1: $m mount(s) under $WORK left"
    return 0
}

OUT=$WORK/tables.md
: >"$OUT"
emit() { printf '%s\n' "$@" >>"$OUT"; }
HF=(hyperfine -N --warmup "$WARMUP" --style basic)

# ================================================================ 1. cold start
log "table 1: cold start of /bin/true"
args=() order=(wrapper unshare bwrap runc crun runsc nucleus nucleus-agent nucleus-agent-rootfs)
for r in "${order[@]}"; do
    [[ -z ${STATUS[$r]} ]] && args+=(-n "$r" "$W/$r")
done
"${HF[@]}" --runs "$RUNS" --export-json "$RESULTS/cold-start.json" "${args[@]}" >&2
leftover_check "cold start"

read -r w_med _ <<<"$(hf_stats "$RESULTS/cold-start.json" wrapper)"
read -r u_med _ <<<"$(hf_stats "$RESULTS/cold-start.json" unshare)"
read -r r_med _ <<<"$(hf_stats "$RESULTS/cold-start.json" runc)"
u_net=$(awk -v a="$u_med" -v b="$w_med" 'BEGIN { print a - b }')
r_net=$(awk -v a="$r_med" -v b="$w_med" 'BEGIN { print a - b }')
declare -A LABEL=(
    [wrapper]="wrapper overhead (\`/bin/sh\` wrapper around \`/bin/true\`)"
    [unshare]="\`unshare\` all namespaces + chroot (floor)"
    [bwrap]="\`bwrap --unshare-all\`"
    [runc]="\`runc run\`"
    [crun]="\`crun run\`"
    [runsc]="\`runsc run\` (gVisor, ptrace platform)"
    [nucleus]="\`nucleus run --bundle\`"
    [nucleus-agent]="\`nucleus run -- /bin/true\` (agent mode, host-derived root)"
    [nucleus-agent-rootfs]="\`nucleus run --rootfs <busybox> -- /bin/true\` (agent mode)"
)
emit "### 1. Cold start of \`/bin/true\` (busybox bundle, hyperfine -N, warmup $WARMUP, $RUNS runs)" ""
emit "| runtime | median ms | mean ± σ ms | net median ms | × unshare | × runc |" "|---|---:|---:|---:|---:|---:|"
for r in "${order[@]}"; do
    if [[ -n ${STATUS[$r]} ]]; then
        emit "| ${LABEL[$r]} | ${STATUS[$r]} | | | | |"
        continue
    fi
    read -r med mean sd <<<"$(hf_stats "$RESULTS/cold-start.json" "$r")"
    if [[ $r == wrapper ]]; then
        emit "| ${LABEL[$r]} | $(ms "$med") | $(ms "$mean") ± $(ms "$sd") | – | – | – |"
        continue
    fi
    net=$(awk -v a="$med" -v b="$w_med" 'BEGIN { print a - b }')
    [[ $r == nucleus-agent ]] && AGENT_NET=$net
    emit "| ${LABEL[$r]} | $(ms "$med") | $(ms "$mean") ± $(ms "$sd") | $(ms "$net") | $(ratio "$net" "$u_net") | $(ratio "$net" "$r_net") |"
done
emit "" "net = median − wrapper median; the ratios divide net medians." ""

# ================================================================ 2. exec
log "table 2: exec latency"
runc --root "$STATE/runc" run --detach --pid-file "$WORK/exec-runc.pid" --bundle "$WORK/bundle-sleep" "$PFX-exec-runc" \
    </dev/null >/dev/null 2>"$WORK/exec-runc.err" || die "runc could not start the exec target: $(first_line "$WORK/exec-runc.err")"
EXEC_PID=$(cat "$WORK/exec-runc.pid"); echo "$EXEC_PID" >>"$WORK/pids"
NUCLEUS_EXEC=""
if "$NUCLEUS" exec --help >/dev/null 2>&1; then
    if "$NUCLEUS" --root "$STATE/nucleus" run --detach --pid-file "$WORK/exec-nucleus.pid" --bundle "$WORK/bundle-sleep" \
        "$PFX-exec-nucleus" </dev/null >/dev/null 2>"$WORK/exec-nucleus.err"; then
        cat "$WORK/exec-nucleus.pid" >>"$WORK/pids"
        if "$NUCLEUS" --root "$STATE/nucleus" exec "$PFX-exec-nucleus" /bin/true </dev/null >/dev/null 2>"$WORK/exec-nucleus.err"; then
            NUCLEUS_EXEC=ok
        else NUCLEUS_EXEC="fails: $(first_line "$WORK/exec-nucleus.err")"; fi
    else NUCLEUS_EXEC="fails to start the target: $(first_line "$WORK/exec-nucleus.err")"; fi
else
    NUCLEUS_EXEC="not available (no \`nucleus exec\` verb yet)"
fi
args=(-n nsenter "nsenter --target $EXEC_PID --all /bin/true" -n runc "runc --root $STATE/runc exec $PFX-exec-runc /bin/true")
[[ $NUCLEUS_EXEC == ok ]] && args+=(-n nucleus "$NUCLEUS --root $STATE/nucleus exec $PFX-exec-nucleus /bin/true")
"${HF[@]}" --runs "$RUNS" --export-json "$RESULTS/exec.json" "${args[@]}" >&2
runc --root "$STATE/runc" delete --force "$PFX-exec-runc" >/dev/null 2>&1 || note "runc delete of the exec target failed"
[[ -e $STATE/nucleus/$PFX-exec-nucleus ]] && { "$NUCLEUS" --root "$STATE/nucleus" delete --force "$PFX-exec-nucleus" >/dev/null 2>&1 || note "nucleus delete of the exec target failed"; }
leftover_check "exec"

read -r n_med _ <<<"$(hf_stats "$RESULTS/exec.json" nsenter)"
read -r r_med _ <<<"$(hf_stats "$RESULTS/exec.json" runc)"
emit "### 2. \`exec /bin/true\` into a running container (\`sleep 1000\`, $RUNS runs)" ""
emit "| command | median ms | mean ± σ ms | × nsenter | × runc |" "|---|---:|---:|---:|---:|"
for r in nsenter runc nucleus; do
    case $r in
        nsenter) label="\`nsenter --all\` into the container's pid (floor)" ;;
        runc) label="\`runc exec\`" ;;
        nucleus) label="\`nucleus exec\`" ;;
    esac
    if [[ $r == nucleus && $NUCLEUS_EXEC != ok ]]; then emit "| $label | $NUCLEUS_EXEC | | | |"; continue; fi
    read -r med mean sd <<<"$(hf_stats "$RESULTS/exec.json" "$r")"
    emit "| $label | $(ms "$med") | $(ms "$mean") ± $(ms "$sd") | $(ratio "$med" "$n_med") | $(ratio "$med" "$r_med") |"
done
emit ""

# ================================================================ 3. syscall cost
log "table 3: $LOOP_N getppid() x $LOOP_REPS, host / nucleus / nucleus+seccomp"
probe() { "$@" </dev/null 2>&1 | tr '\t\n' '  ' | tr -s ' '; }
PROBE_PLAIN=$(probe "$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/bundle-probe" "$PFX-probe-1")
PROBE_SECCOMP=$(probe "$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/bundle-probe-seccomp" "$PFX-probe-2")
log "probe without profile: $PROBE_PLAIN"
log "probe with profile:    $PROBE_SECCOMP"
[[ $PROBE_SECCOMP == *"Seccomp: 2"*"errno 1 "* ]] || note "seccomp profile does not look enforced under nucleus: $PROBE_SECCOMP"
[[ $PROBE_PLAIN == *"Seccomp: 0"* ]] || note "container without a profile still has a seccomp filter: $PROBE_PLAIN"
declare -A LOOP FILES
loop_variants=(host nucleus nucleus-seccomp-allowall nucleus-seccomp nucleus-seccomp-args runc-seccomp)
[[ -z $AGENT_SC ]] || loop_variants+=(nucleus-agentprofile)
PROBE_AGENT=""
if [[ -z ${STATUS[nucleus-agent-rootfs]} ]]; then
    loop_variants+=(nucleus-agent)
    PROBE_AGENT=$(probe "$NUCLEUS" --root "$STATE/nucleus" run --rootfs "$ROOTFS" -- /bin/getppid-loop probe)
    log "probe in agent mode:   $PROBE_AGENT"
fi
i=0
for ((rep = 1; rep <= LOOP_REPS; rep++)); do
    for v in "${loop_variants[@]}"; do
        i=$((i + 1))
        case $v in
            host) cmd=("$ROOTFS/bin/getppid-loop" "$LOOP_N") ;;
            nucleus) cmd=("$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/bundle-loop" "$PFX-loop-$i") ;;
            nucleus-seccomp) cmd=("$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/bundle-loop-seccomp" "$PFX-loop-$i") ;;
            nucleus-seccomp-args) cmd=("$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/bundle-loop-seccomp-args" "$PFX-loop-$i") ;;
            nucleus-seccomp-allowall) cmd=("$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/bundle-loop-seccomp-allowall" "$PFX-loop-$i") ;;
            nucleus-agentprofile) cmd=("$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/bundle-loop-agentprofile" "$PFX-loop-$i") ;;
            runc-seccomp) cmd=(runc --root "$STATE/runc" run --bundle "$WORK/bundle-loop-seccomp" "$PFX-loop-$i") ;;
            nucleus-agent) cmd=("$NUCLEUS" --root "$STATE/nucleus" run --rootfs "$ROOTFS" -- /bin/getppid-loop "$LOOP_N") ;;
        esac
        v_ns=$("${cmd[@]}" </dev/null 2>"$WORK/loop.err") || { note "loop $v failed: $(first_line "$WORK/loop.err")"; continue; }
        LOOP[$v]+="$v_ns "
        # The same variant on the file loop (not for the two synthetic profiles).
        case $v in
            host) cmd=("$ROOTFS/bin/getppid-loop" files "$FILES_N") ;;
            nucleus) cmd=("$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/bundle-files" "$PFX-files-$i") ;;
            nucleus-seccomp) cmd=("$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/bundle-files-seccomp" "$PFX-files-$i") ;;
            nucleus-agentprofile) cmd=("$NUCLEUS" --root "$STATE/nucleus" run --bundle "$WORK/bundle-files-agentprofile" "$PFX-files-$i") ;;
            runc-seccomp) cmd=(runc --root "$STATE/runc" run --bundle "$WORK/bundle-files-seccomp" "$PFX-files-$i") ;;
            nucleus-agent) cmd=("$NUCLEUS" --root "$STATE/nucleus" run --rootfs "$ROOTFS" -- /bin/getppid-loop files "$FILES_N") ;;
            *) continue ;;
        esac
        v_ns=$("${cmd[@]}" </dev/null 2>"$WORK/loop.err") || { note "file loop $v failed: $(first_line "$WORK/loop.err")"; continue; }
        FILES[$v]+="$v_ns "
    done
done
leftover_check "syscall loop"
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%+.1f%%", (a - b) / b * 100; else printf "–" }'; }
min_of() { printf '%s\n' "$@" | sort -g | head -1; }
# loop_row LABEL PRINTF_FMT "VALUES" HOST_MEDIAN PLAIN_MEDIAN PLAIN_MIN: one row of tables 3 and 3b
loop_row() {
    local med min range
    med=$(median $3)
    min=$(min_of $3)
    range=$(printf '%s\n' $3 | sort -g | sed -n '1p;$p' | paste -sd' ' | sed 's/ / – /')
    emit "| $1 | $(printf "$2" "$med") | $range | $(pct "$med" "$4") | $(pct "$med" "$5") | $(pct "$min" "$6") |"
}
host_ns=$(median ${LOOP[host]:-0})
plain_ns=$(median ${LOOP[nucleus]:-0})
plain_min=$(min_of ${LOOP[nucleus]:-0})
emit "### 3. Steady-state syscall cost ($LOOP_N \`getppid\` per run, median of $LOOP_REPS runs)" ""
emit "Profile: defaultAction \`SCMP_ACT_ERRNO\` (EPERM), $ALLOW_N syscalls allowed. Probe inside nucleus with the profile: \`$PROBE_SECCOMP\`; without: \`$PROBE_PLAIN\`${PROBE_AGENT:+; in agent mode: \`$PROBE_AGENT\`}" ""
emit "| where | ns/syscall median | min – max | Δ vs host (median) | Δ vs nucleus without seccomp (median) | Δ vs nucleus without seccomp (min) |" "|---|---:|---:|---:|---:|---:|"
for v in "${loop_variants[@]}"; do
    case $v in
        host) label="host (no container)" ;;
        nucleus) label="nucleus, no seccomp profile" ;;
        nucleus-seccomp) label="nucleus, $ALLOW_N-syscall allow-list" ;;
        nucleus-seccomp-args) label="nucleus, same list but \`getppid\` arg-filtered (defeats the kernel's allow cache)" ;;
        nucleus-seccomp-allowall) label="nucleus, allow-all filter (no rules: the kernel's cost of any filter)" ;;
        nucleus-agentprofile) label="nucleus, the agent-mode default profile alone (busybox bundle, no Landlock)" ;;
        runc-seccomp) label="runc, $ALLOW_N-syscall allow-list (reference)" ;;
        nucleus-agent) label="nucleus agent mode (\`run --rootfs\`), its built-in default profile" ;;
    esac
    [[ -n ${LOOP[$v]:-} ]] || { emit "| $label | failed | | | | |"; continue; }
    loop_row "$label" '%.1f' "${LOOP[$v]}" "$host_ns" "$plain_ns" "$plain_min"
done
emit ""
fhost=$(median ${FILES[host]:-0})
fplain=$(median ${FILES[nucleus]:-0})
fplain_min=$(min_of ${FILES[nucleus]:-0})
emit "**3b. A syscall-heavy file loop** ($FILES_N × \`open\`, \`fstat\`, 4 KiB \`pread\`, \`close\` of /bin/busybox per run, median of $LOOP_REPS runs)" ""
emit "| where | ns/cycle median | min – max | Δ vs host (median) | Δ vs nucleus without seccomp (median) | Δ vs nucleus without seccomp (min) |" "|---|---:|---:|---:|---:|---:|"
for v in host nucleus nucleus-seccomp runc-seccomp nucleus-agentprofile nucleus-agent; do
    case $v in
        nucleus-agentprofile) label="nucleus, the agent-mode default profile alone (no Landlock)" ;;
        host) label="host (no container)" ;;
        nucleus) label="nucleus, no seccomp profile" ;;
        nucleus-seccomp) label="nucleus, $ALLOW_N-syscall allow-list" ;;
        runc-seccomp) label="runc, $ALLOW_N-syscall allow-list (reference)" ;;
        nucleus-agent) label="nucleus agent mode: default profile and Landlock" ;;
    esac
    [[ -n ${FILES[$v]:-} ]] || continue
    loop_row "$label" '%.0f' "${FILES[$v]}" "$fhost" "$fplain" "$fplain_min"
done
emit ""

# ================================================================ 4. density
density() { # RUNTIME BIN — start DENSITY_N idle containers, measure, remove, verify
    local rt=$1 bin=$2 root=$STATE/$1 tag="$PFX-d$1" i fail=0 t0 t1 t2 t3 mem0 mem1 rt_rss ctr_rss=0 nalive=0 pid cg cg_kb=0 cg_n=0
    local pids=()
    sync
    sleep 1
    mem0=$(mem_available_kb)
    t0=$(now_ns)
    for ((i = 1; i <= DENSITY_N; i++)); do
        if "$bin" --root "$root" run --detach --pid-file "$WORK/$tag-$i.pid" --bundle "$WORK/bundle-idle" "$tag-$i" \
            </dev/null >/dev/null 2>>"$WORK/density-$rt.err"; then
            pid=$(cat "$WORK/$tag-$i.pid"); pids+=("$pid"); echo "$pid" >>"$WORK/pids"
        else
            fail=$((fail + 1))
        fi
    done
    t1=$(now_ns)
    sleep 2
    mem1=$(mem_available_kb)
    rt_rss=$(rss_of_exe "$bin")
    for pid in "${pids[@]}"; do
        if alive "$pid"; then
            nalive=$((nalive + 1))
            ctr_rss=$((ctr_rss + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)))
            cg=$(cgroup_mem_kb "$pid") && [[ -n $cg ]] && { cg_kb=$((cg_kb + cg)); cg_n=$((cg_n + 1)); }
        fi
    done
    local monitors
    monitors=$(pids_of_exe "$bin" | wc -l)
    t2=$(now_ns)
    for ((i = 1; i <= DENSITY_N; i++)); do
        [[ -e $WORK/$tag-$i.pid ]] || continue
        "$bin" --root "$root" delete --force "$tag-$i" >/dev/null 2>>"$WORK/density-$rt.err" || fail=$((fail + 1))
    done
    t3=$(now_ns)
    sleep 0.5
    local left_state left_cg left_proc=0
    if [[ $rt == nucleus ]]; then left_state=$(find "$root" -mindepth 1 -maxdepth 1 ! -name '.*' | wc -l)
    else left_state=$("$bin" --root "$root" list -q 2>/dev/null | wc -l); fi
    left_cg=$(cgroup_dirs_named "$tag" | wc -l)
    for pid in "${pids[@]}"; do alive "$pid" && left_proc=$((left_proc + 1)); done
    ((fail == 0)) || note "density $rt: $fail failed start/delete call(s): $(first_line "$WORK/density-$rt.err")"
    ((left_state + left_cg + left_proc == 0)) ||
        note "density $rt: left behind $left_state state entries, $left_cg cgroup dirs, $left_proc processes"
    ((monitors == 0)) || note "density $rt: $monitors $rt process(es) still running while containers were up"
    awk -v n="$DENSITY_N" -v ok="${#pids[@]}" -v alive="$nalive" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" \
        -v m0="$mem0" -v m1="$mem1" -v rrss="$rt_rss" -v crss="$ctr_rss" -v mon="$monitors" \
        -v ls="$left_state" -v lc="$left_cg" -v lp="$left_proc" -v rt="$rt" -v cgkb="$cg_kb" -v cgn="$cg_n" 'BEGIN {
        printf "| %s | %d/%d | %.2f s (%.1f ms each) | %.0f KiB | %s | %d KiB (%d procs) | %.0f KiB | %.2f s (%.1f ms each) | %s |\n",
            rt, alive, n, (t1 - t0) / 1e9, (t1 - t0) / 1e6 / n, (m0 - m1) / n,
            cgn ? sprintf("%.0f KiB", cgkb / cgn) : "n/a", rrss, mon, crss / (alive ? alive : 1),
            (t3 - t2) / 1e9, (t3 - t2) / 1e6 / n,
            (ls + lc + lp == 0) ? "nothing" : sprintf("%d state, %d cgroups, %d procs", ls, lc, lp) }'
}
log "table 4: density, $DENSITY_N idle containers (nucleus, then runc)"
emit "### 4. Density: $DENSITY_N idle detached containers (\`sleep 100000\`), started one after another" ""
emit "| runtime | running | time to start all | host memory per sandbox (MemAvailable Δ / N) | memory cgroup usage per container | RSS of runtime processes left | RSS of each container's \`sleep\` | time to delete all (\`delete --force\`) | left behind |"
emit "|---|---:|---:|---:|---:|---:|---:|---:|---|"
emit "$(density nucleus "$NUCLEUS")"
emit "$(density runc "$(command -v runc)")"
emit ""
leftover_check "density"

# ================================================================ 5. peak RSS
log "table 5: peak RSS (GNU time -v), $RSS_REPS runs each"
emit "### 5. Peak RSS of the runtime while running \`/bin/true\` (GNU \`time -v\` \"Maximum resident set size\", $RSS_REPS runs)" ""
emit "| runtime | median KiB | max KiB | × runc |" "|---|---:|---:|---:|"
declare -A RSS
for r in unshare bwrap runc crun runsc nucleus nucleus-agent; do
    [[ -z ${STATUS[$r]} ]] || continue
    vals=()
    for ((i = 1; i <= RSS_REPS; i++)); do
        id="$PFX-rss-$r-$i"
        case $r in
            unshare) cmd=(unshare --pid --net --ipc --uts --mount --cgroup --fork --root "$ROOTFS" /bin/true) ;;
            bwrap) cmd=(bwrap --unshare-all --bind "$ROOTFS" / --proc /proc --dev /dev /bin/true) ;;
            runc) cmd=(runc --root "$STATE/runc" run --bundle "$B" "$id") ;;
            crun) cmd=(crun --root "$STATE/crun" run --bundle "$WORK/bundle-crun" "$id") ;;
            runsc) cmd=(runsc --root "$STATE/runsc" --platform=ptrace --network=none run --bundle "$B" "$id") ;;
            nucleus) cmd=("$NUCLEUS" --root "$STATE/nucleus" run --bundle "$B" "$id") ;;
            nucleus-agent) cmd=("$NUCLEUS" --root "$STATE/nucleus" run -- /bin/true) ;;
        esac
        v=$(peak_rss_kb "${cmd[@]}" </dev/null) && vals+=("$v") || note "peak RSS: $r run $i failed"
    done
    ((${#vals[@]})) && RSS[$r]="$(median "${vals[@]}") $(printf '%s\n' "${vals[@]}" | sort -g | tail -1)"
done
read -r runc_rss _ <<<"${RSS[runc]:-0 0}"
for r in unshare bwrap runc crun runsc nucleus nucleus-agent; do
    if [[ -n ${STATUS[$r]} ]]; then emit "| ${LABEL[$r]} | ${STATUS[$r]} | | |"; continue; fi
    read -r med max <<<"${RSS[$r]:-failed –}"
    emit "| ${LABEL[$r]} | $med | $max | $(ratio "$med" "$runc_rss") |"
done
emit "" "GNU time reports ru_maxrss of the runtime and the descendants it reaped: the largest single process, not a sum." ""
leftover_check "peak RSS"

# ================================================================ 6. kernel floor of the protections
# What the kernel alone charges for each protection agent mode applies, measured by
# bench/kernel-costs.c with no runtime around it. Their sum, added to the unshare
# floor, bounds from below what any runtime applying them can reach.
if [[ -z ${STATUS[nucleus-agent]} ]]; then
    log "table 6: kernel cost of each protection (bench/kernel-costs.c)"
    KC=$WORK/bin/kernel-costs KC_N=${KC_N:-200}
    kc_root=$WORK/kc-root
    "$NUCLEUS" --root "$kc_root" run -- /bin/true </dev/null >/dev/null 2>&1 || note "kernel costs: agent-mode run failed"
    agent_bpf=$(find "$kc_root/.seccomp-cache" -name '*.bpf' -print -quit 2>/dev/null)
    agent_mounts=$("$NUCLEUS" --root "$kc_root" run -- /bin/cat /proc/self/mountinfo </dev/null 2>/dev/null | wc -l)
    declare -A KCV KCL
    KCL[clone]="fork, exit and reap a child in new pid, net, ipc, uts, mount and cgroup namespaces (the floor's own work)"
    KCV[clone]=$("$KC" clone "$KC_N" 2>/dev/null)
    KCL[cgroups]="cgroups: mkdir + rmdir under our own cgroup in every hierarchy ($("$KC" cgroups 1 2>&1 >/dev/null | grep -o '[0-9]* hierarchies'))"
    KCV[cgroups]=$("$KC" cgroups "$KC_N" 2>/dev/null)
    if [[ -n $agent_bpf ]]; then
        KCL[seccomp]="seccomp: load the agent profile ($("$KC" seccomp 1 "$agent_bpf" 2>&1 >/dev/null | grep -o '[0-9]* instructions'); the kernel JIT-compiles it)"
        KCV[seccomp]=$("$KC" seccomp "$KC_N" "$agent_bpf" 2>/dev/null)
    fi
    KCL[mounts]="mounts: a tmpfs plus $agent_mounts read-only bind mounts (as many mounts as the agent root has; binds are the cheapest kind), and their teardown"
    KCV[mounts]=$("$KC" mounts "$((KC_N / 2))" "$agent_mounts" 2>/dev/null)
    KCL[landlock]="Landlock: a ruleset with 12 path rules, then restrict_self"
    KCV[landlock]=$("$KC" landlock "$KC_N" 12 2>/dev/null)
    KCL[lo]="bring loopback up in the new network namespace"
    KCV[lo]=$("$KC" lo "$KC_N" 2>/dev/null)
    rm -rf "$kc_root"
    u_us=$(awk -v a="$u_net" 'BEGIN { print a * 1e6 }')
    emit "### 6. The kernel's own cost of each protection in agent mode (\`bench/kernel-costs.c\`, median of $KC_N)" ""
    emit "| kernel work, with no runtime around it | median µs | × unshare floor (net $(printf '%.0f' "$u_us") µs) |" "|---|---:|---:|"
    extra=0
    for k in clone cgroups seccomp mounts landlock lo; do
        [[ -n ${KCV[$k]:-} ]] || { [[ -n ${KCL[$k]:-} ]] && note "kernel costs: probe $k failed"; continue; }
        emit "| ${KCL[$k]} | $(printf '%.0f' "${KCV[$k]}") | $(awk -v a="${KCV[$k]}" -v b="$u_us" 'BEGIN { printf "%.2f×", a / b }') |"
        [[ $k == clone ]] || extra=$(awk -v a="$extra" -v b="${KCV[$k]}" 'BEGIN { print a + b }')
    done
    emit "| **the protections beyond the floor, summed** | **$(printf '%.0f' "$extra")** | **$(awk -v a="$extra" -v b="$u_us" 'BEGIN { printf "%.2f×", a / b }')** |" ""
    emit "A sandbox doing only this kernel work would take at least $(awk -v a="$extra" -v b="$u_us" 'BEGIN { printf "%.2f×", (a + b) / b }') the unshare floor; 1.3× leaves $(awk -v b="$u_us" 'BEGIN { printf "%.0f", 0.3 * b }') µs for all of it. The agent-mode row of table 1 is $(awk -v a="${AGENT_NET:-0}" -v b="$u_net" 'BEGIN { if (b > 0 && a > 0) printf "%.2f×", a / b; else printf "–" }') the floor." ""
fi

# ================================================================ report
# nucleus keeps caches in hidden dirs of its --root (not containers): list them once
hidden=$(cd "$STATE/nucleus" && for d in .[!.]*; do [[ -e $d ]] && printf '%s (%s files) ' "$d" "$(find "$d" -type f | wc -l)"; done; true)
[[ -z $hidden ]] || note "nucleus keeps hidden entries in its --root after all containers are gone: ${hidden}(caches, not counted as leftovers; removed with the temp dir)"
{
    echo "## Results"
    echo
    machine_description
    echo "- nucleus: $NUCLEUS_VERSION"
    ver() { { "$@" 2>/dev/null || echo "$1: not installed"; } | head -1; }
    echo "- $(ver runc --version); $(ver crun --version); $(ver runsc --version); $(ver bwrap --version); $(ver unshare --version); $(ver hyperfine --version)"
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    cat "$OUT"
    echo "### Anomalies"
    echo
    if [[ -s $NOTES ]]; then cat "$NOTES"; else echo "- none: every run succeeded and nothing was left behind between tables"; fi
} | tee "$RESULTS/latest.md"
log "tables written to $RESULTS/latest.md, raw hyperfine data to $RESULTS/*.json"
