#!/usr/bin/env bash
# The scatter benchmark across simulated hosts: network namespaces joined by a bridge, each
# with its own address, so every byte between "hosts" crosses a veth link over TCP. Needs
# root (ip netns) and a release build of the benchmark:
#
#   cargo build --release -p benchmarks --bin scatter
#   sudo benchmarks/netns_scatter.sh                          # the defaults below
#   sudo benchmarks/netns_scatter.sh --sizes 1MiB --reps 1    # any scatter options
#
# Defaults: 3 hosts (NETNS_HOSTS), workload scatter, modes native-bytes, proxy-tcp and
# raw-zmq, 1 MiB and 16 MiB, 5 repetitions. Same-host shared memory is off on every host
# (PROXYSTORE_ZMQ_SHM=0): namespaces share one kernel and could otherwise map each other's
# memory, which separate machines cannot. The peers use a fresh cluster secret, as a real
# cluster would; with NETNS_INSECURE=1 they run without one (PROXYSTORE_INSECURE=1: no
# request or reply proofs, so no hashing of payloads), to show what integrity costs. Process
# 0's table and files go to SCATTER_BENCH_OUT (default
# target/scatter-netns); the other hosts' logs are printed if they fail.
#
# It only creates namespaces named psbench-<its PID>-*, and removes them on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

hosts=${NETNS_HOSTS:-3}
scatter=${SCATTER_BIN:-target/release/scatter}
subnet=${NETNS_SUBNET:-10.232.0}
port=2101

if [ "$(id -u)" -ne 0 ]; then
  echo "netns_scatter: needs root (ip netns); run it with sudo" >&2
  exit 2
fi
if [ ! -x "$scatter" ]; then
  echo "netns_scatter: $scatter not found; cargo build --release -p benchmarks --bin scatter" >&2
  exit 2
fi
if [ "$#" -eq 0 ]; then
  set -- --workloads scatter --modes native-bytes,proxy-tcp,raw-zmq --sizes 1MiB,16MiB --reps 5
fi
scatter=$(realpath "$scatter")

prefix="psbench-$$"
work=$(mktemp -d)
namespaces=()
cleanup() {
  for ns in "${namespaces[@]}"; do
    ip netns delete "$ns" 2>/dev/null || echo "netns_scatter: could not remove $ns" >&2
  done
  rm -rf "$work"
}
trap cleanup EXIT

switch="$prefix-sw"
ip netns add "$switch"
namespaces+=("$switch")
ip -n "$switch" link add br0 type bridge
ip -n "$switch" link set br0 up
: >"$work/hosts.txt"
for ((i = 0; i < hosts; i++)); do
  ns="$prefix-h$i"
  ip netns add "$ns"
  namespaces+=("$ns")
  ip link add eth0 netns "$ns" type veth peer name "p$i" netns "$switch"
  ip -n "$switch" link set "p$i" master br0
  ip -n "$switch" link set "p$i" up
  ip -n "$ns" addr add "$subnet.$((i + 1))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  echo "$subnet.$((i + 1)):$port" >>"$work/hosts.txt"
done

if [ "${NETNS_INSECURE:-0}" = 1 ]; then
  export PROXYSTORE_INSECURE=1
else
  # A fresh 32-byte secret, readable by its owner only.
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/secret")
  export PROXYSTORE_SECRET_FILE="$work/secret"
fi
export PROXYSTORE_ZMQ_SHM=0
export SCATTER_BENCH_OUT=${SCATTER_BENCH_OUT:-$PWD/target/scatter-netns}
pids=()
for ((i = 1; i < hosts; i++)); do
  ip netns exec "$prefix-h$i" env PROXYSTORE_ZMQ_INTERFACE="$subnet.$((i + 1))" \
    "$scatter" --hostfile "$work/hosts.txt" --process "$i" "$@" >"$work/host$i.log" 2>&1 &
  pids+=("$!")
done
status=0
ip netns exec "$prefix-h0" env PROXYSTORE_ZMQ_INTERFACE="$subnet.1" \
  "$scatter" --hostfile "$work/hosts.txt" --process 0 "$@" || status=$?
for ((i = 1; i < hosts; i++)); do
  if ! wait "${pids[$((i - 1))]}"; then
    status=1
    echo "netns_scatter: host $i failed; its log:" >&2
    cat "$work/host$i.log" >&2
  fi
done
exit "$status"
