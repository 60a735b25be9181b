#!/usr/bin/env bash
# Networking benchmarks: start time with --network <bridge> vs none, iperf3
# through the bridge and a published port vs loopback, and the resolver's
# answer time for 1,000 allowed names. Needs root, nft, dnsmasq, iperf3 and
# python3; hyperfine when present; podman and busybox for the podman rows
# (runc, its default bridge). Uses only namespaces and addresses it
# creates (10.224.0.0/24, 198.18.250.0/24, 198.19.200.0/22 in DNS answers)
# and removes them on exit. Prints Markdown on stdout.
#
#   sudo bench/network.sh            # RUNS=50 IPERF_SECS=5 NAMES=1000 SKIP_BUILD=1
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-50}
IPERF_SECS=${IPERF_SECS:-5}
NAMES=${NAMES:-1000}
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p nucleus-cli >&2
fi
N=$PWD/target/release/nucleus
TMP=$(mktemp -d)
export NUCLEUS_DATA_ROOT=$TMP/data NUCLEUS_NFT_TABLE=nucbench$$
ROOT=$TMP/state
NET=nbench$$
NS=nbrem$$
PIDS=()

# podman's default bridge (CNI here) leaves its bridge and iptables tables:
# remove those that were not there before.
POD=(podman --root "$TMP/p-root" --runroot "$TMP/p-run" --runtime runc --cgroup-manager cgroupfs --events-backend none)
TABLES_BEFORE=$(nft list tables 2>/dev/null || true)
PODBR_BEFORE=$(ip -o link show cni-podman0 2>/dev/null || true)

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if command -v podman >/dev/null && [ -d "$TMP/p-root" ]; then
        "${POD[@]}" system reset -f >/dev/null 2>&1 || true
        [ -z "$PODBR_BEFORE" ] && ip link del cni-podman0 2>/dev/null
        for t in "ip nat" "ip filter"; do
            grep -qx "table $t" <<<"$TABLES_BEFORE" || nft delete table $t 2>/dev/null || true
        done
    fi
    wait 2>/dev/null || true
    "$N" network prune >/dev/null 2>&1 || true
    ip netns del "$NS" 2>/dev/null || true
    ip link del nbh$$ 2>/dev/null || true
    nft delete table inet "$NUCLEUS_NFT_TABLE" 2>/dev/null || true
    nft delete table bridge "$NUCLEUS_NFT_TABLE" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

"$N" network create "$NET" --subnet 10.224.0.0/24 >/dev/null
CTR_IP=10.224.0.2

# A remote namespace with dnsmasq answering n<i>.bench.test.
ip netns add "$NS"
ip link add nbh$$ type veth peer name nbr$$
ip link set nbr$$ netns "$NS"
ip addr add 198.18.250.1/24 dev nbh$$ && ip link set nbh$$ up
ip -n "$NS" link set lo up && ip -n "$NS" addr add 198.18.250.2/24 dev nbr$$ && ip -n "$NS" link set nbr$$ up
HOSTS=$TMP/bench.hosts
for i in $(seq 0 $((NAMES - 1))); do
    echo "198.19.$((200 + i / 250)).$((i % 250 + 1)) n$i.bench.test"
done >"$HOSTS"
ip netns exec "$NS" dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --addn-hosts="$HOSTS" \
    --bind-interfaces --listen-address=198.18.250.2 --port=53 --local=/test/ --user=root \
    --pid-file="$TMP/dnsmasq.pid" --local-ttl=300 --cache-size=0 2>/dev/null &
PIDS+=($!)
sleep 0.5

echo "## Networking"
echo
echo "Host: $(nproc) cores, $(uname -r). Runs: $RUNS; iperf3: ${IPERF_SECS}s; names: $NAMES."
echo

# 1. Start time.
if command -v hyperfine >/dev/null; then
    hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$TMP/start.json" \
        "$N --root $ROOT run -- /bin/true" "$N --root $ROOT run --network $NET -- /bin/true" >&2
    read -r none bridge < <(jq -r '[.results[].mean * 1000] | map(tostring) | join(" ")' "$TMP/start.json")
    read -r mnone mbridge < <(jq -r '[.results[].median * 1000] | map(tostring) | join(" ")' "$TMP/start.json")
else
    t() {
        local s e
        s=$(date +%s%N)
        for _ in $(seq "$RUNS"); do "$@" >/dev/null; done
        e=$(date +%s%N)
        echo "scale=2; ($e - $s) / $RUNS / 1000000" | bc
    }
    none=$(t "$N" --root "$ROOT" run -- /bin/true)
    bridge=$(t "$N" --root "$ROOT" run --network "$NET" -- /bin/true)
    mnone=$none mbridge=$bridge
fi
printf '| start (`run -- /bin/true`) | mean ms | median ms |\n|---|---|---|\n| `--network none` | %.2f | %.2f |\n| `--network %s` (bridge) | %.2f | %.2f |\n| difference | %+.2f | %+.2f |\n' \
    "$none" "$mnone" "$NET" "$bridge" "$mbridge" "$(echo "$bridge - $none" | bc)" "$(echo "$mbridge - $mnone" | bc)"

# 1b. The same with podman (runc, its default bridge), on a busybox rootfs, when it runs.
pod_line="| podman \`--network none\` / \`bridge\` | not measured (%s) |\n"
if command -v podman >/dev/null && command -v busybox >/dev/null && command -v hyperfine >/dev/null; then
    mkdir -p "$TMP/p-tree/bin" && cp "$(command -v busybox)" "$TMP/p-tree/bin/" && ln -s busybox "$TMP/p-tree/bin/true"
    tar -C "$TMP/p-tree" -cf "$TMP/p-tree.tar" .
    # Podman asks for limits above this VM's hard ones by default: ask for what we have.
    NPROC=$(ulimit -Hu)
    [[ $NPROC == unlimited || $NPROC -gt 32768 ]] && NPROC=32768
    U="--ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=$NPROC:$NPROC"
    if "${POD[@]}" import -q "$TMP/p-tree.tar" nucbench-true >/dev/null 2>"$TMP/podman.err" &&
        "${POD[@]}" run --rm $U --network bridge nucbench-true /bin/true 2>"$TMP/podman.err"; then
        hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$TMP/podman.json" \
            "${POD[*]} run --rm $U --network none nucbench-true /bin/true" \
            "${POD[*]} run --rm $U --network bridge nucbench-true /bin/true" >&2
        read -r pnone pbridge < <(jq -r '[.results[].mean * 1000] | map(tostring) | join(" ")' "$TMP/podman.json")
        printf '| podman `--network none` | %.2f |\n| podman `--network bridge` | %.2f |\n| podman difference | %+.2f |\n' \
            "$pnone" "$pbridge" "$(echo "$pbridge - $pnone" | bc)"
    else
        # shellcheck disable=SC2059 # the format is ours
        printf "$pod_line" "podman run failed: $(head -1 "$TMP/podman.err")"
    fi
else
    # shellcheck disable=SC2059
    printf "$pod_line" "needs podman, busybox and hyperfine"
fi
echo

# 2. Throughput.
gbps() { jq -r '.end.sum_received.bits_per_second / 1e9' "$1"; }
# No connect probe: a probe would be the one client of `-s -1`.
iperf3 -s -1 -B 127.0.0.1 -p 5301 >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5
iperf3 -c 127.0.0.1 -p 5301 -t "$IPERF_SECS" -J >"$TMP/lo.json"
"$N" --root "$ROOT" run --network "$NET" -p 127.0.0.1:5302:5201 -- iperf3 -s >/dev/null 2>&1 &
PIDS+=($!)
sleep 1
iperf3 -c "$CTR_IP" -p 5201 -t "$IPERF_SECS" -J >"$TMP/br.json"
iperf3 -c 127.0.0.1 -p 5302 -t "$IPERF_SECS" -J >"$TMP/pub.json"
lo=$(gbps "$TMP/lo.json")
br=$(gbps "$TMP/br.json")
pub=$(gbps "$TMP/pub.json")
pct() { echo "scale=1; 100 * $1 / $2" | bc; }
printf '| iperf3 TCP, 1 stream | Gbit/s | vs loopback |\n|---|---|---|\n| host loopback | %.2f | 100%% |\n| host -> container over the bridge | %.2f | %s%% |\n| host -> 127.0.0.1 published port | %.2f | %s%% |\n\n' \
    "$lo" "$br" "$(pct "$br" "$lo")" "$pub" "$(pct "$pub" "$lo")"

# 3. The resolver: every name allowed by one wildcard; two passes.
cat >"$TMP/dnsbench.py" <<'PY'
import socket, struct, sys, time
n = int(sys.argv[1])
server = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]
def query(i, name):
    q = struct.pack(">HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return q + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for label in ("first (upstream + nft set)", "repeat (upstream, set cached)"):
    times = []
    for i in range(n):
        t = time.perf_counter_ns()
        s.sendto(query(i, f"n{i}.bench.test"), (server, 53))
        r = s.recv(4096)
        times.append((time.perf_counter_ns() - t) / 1000)
        assert r[3] & 0xf == 0, f"rcode {r[3] & 0xf} for n{i}"
    times.sort()
    print(f"| {label} | {times[len(times)//2]:.0f} | {times[int(len(times)*0.99)-1]:.0f} |")
PY
chmod a+r "$TMP/dnsbench.py"
echo "| resolver, $NAMES allowed names | p50 µs | p99 µs |"
echo "|---|---|---|"
"$N" --root "$ROOT" run --network "$NET" --dns 198.18.250.2 --egress-domain '*.bench.test' \
    -v "$TMP/dnsbench.py:/bench.py:ro" -- python3 /bench.py "$NAMES"
echo
