# Shared helpers for bench/run.sh. Sourced, not executed.
# shellcheck shell=bash

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ensure_pkgs CMD:PKG ... — apt-get install the packages whose command is missing.
ensure_pkgs() {
    local want=() pair cmd pkg
    for pair in "$@"; do
        cmd=${pair%%:*} pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || want+=("$pkg")
    done
    ((${#want[@]})) || return 0
    log "installing: ${want[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}" >/dev/null 2>&1 ||
        { log "apt-get install ${want[*]} failed; retrying after apt-get update";
          apt-get update >/dev/null 2>&1 || true
          DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}" >/dev/null 2>&1 || true; }
}

now_ns() { date +%s%N; }

# first_line FILE — first non-empty line of a file, stripped of runtime log decoration.
first_line() {
    grep -m1 -v '^[[:space:]]*$' "$1" 2>/dev/null |
        sed -E 's/^time="[^"]*" level=[a-z]+ msg="(.*)"$/\1/; s/\|/\\|/g' | cut -c1-160
}

# hf_stats JSON NAME — prints "median mean stddev" in seconds for the named command.
hf_stats() {
    jq -r --arg n "$2" '.results[] | select(.command == $n) | "\(.median) \(.mean) \(.stddev)"' "$1"
}

# ms SECONDS — format as milliseconds with two decimals.
ms() { awk -v s="$1" 'BEGIN { printf "%.2f", s * 1000 }'; }

# ratio A B — A/B with two decimals, or "–" when B is not positive.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else printf "–" }'; }

# median of numbers given as arguments
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

mem_available_kb() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }

# rss_of_exe PATH — sum of VmRSS (kB) of live processes whose executable is PATH.
rss_of_exe() {
    local target p sum=0 exe rss
    target=$(readlink -f "$1")
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        [[ $exe == "$target" ]] || continue
        rss=$(awk '/^VmRSS:/ { print $2 }' "$p/status" 2>/dev/null)
        sum=$((sum + ${rss:-0}))
    done
    echo "$sum"
}

# pids_of_exe PATH — pids of live processes whose executable is PATH.
pids_of_exe() {
    local target p exe
    target=$(readlink -f "$1")
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        [[ $exe == "$target" ]] && echo "${p#/proc/}"
    done
    return 0
}

# cgroup_dirs_named PREFIX — cgroup directories (any hierarchy) whose name starts with PREFIX.
cgroup_dirs_named() {
    find /sys/fs/cgroup -mindepth 1 -maxdepth 8 -type d -name "$1*" 2>/dev/null | sort -r
}

# mounts_under DIR — mount points below DIR, deepest first.
mounts_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# peak_rss_kb CMD... — "Maximum resident set size" (kB) from GNU time -v, or "" if CMD failed.
peak_rss_kb() {
    local out
    out=$(/usr/bin/time -v "$@" 2>&1 >/dev/null) || return 1
    awk -F': ' '/Maximum resident set size/ { print $2 }' <<<"$out"
}

machine_description() {
    local cpu
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    echo "- CPU: ${cpu:-unknown} (nproc = $(nproc))"
    echo "- Memory: $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "- Kernel: $(uname -r); $(. /etc/os-release && echo "$PRETTY_NAME")"
    if [[ -d /sys/fs/cgroup/unified ]]; then
        echo "- cgroups: hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified)"
    elif [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
        echo "- cgroups: unified (v2)"
    else
        echo "- cgroups: legacy (v1)"
    fi
    echo "- State roots (--root of every runtime): $(stat -f -c %T "$STATE")"
    echo "- Load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# alive PID — true if PID exists and is not a zombie (detached container inits are
# reparented to the host's pid 1, which may reap them a moment after they die).
alive() {
    local st
    st=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $st && $st != Z ]]
}

# cgroup_mem_kb PID — memory charged to PID's memory cgroup (v1 memory.usage_in_bytes,
# or v2 memory.current), in KiB; empty if it cannot be read.
cgroup_mem_kb() {
    local path f
    path=$(awk -F: '$2 == "memory" { print $3 }' "/proc/$1/cgroup" 2>/dev/null)
    if [[ -n $path ]]; then
        f=/sys/fs/cgroup/memory$path/memory.usage_in_bytes
    else
        path=$(awk -F: '$1 == "0" { print $3 }' "/proc/$1/cgroup" 2>/dev/null)
        f=/sys/fs/cgroup$path/memory.current
        [[ -e $f ]] || f=/sys/fs/cgroup/unified$path/memory.current
    fi
    [[ -r $f ]] && echo $(($(cat "$f") / 1024))
}
