#!/usr/bin/env bash
# Simulated cluster hosts on one machine: Linux network namespaces joined by veth pairs.
#
#   netns-hosts.sh check                 exit 0 if namespaces can be made here; else print why, exit 2
#   netns-hosts.sh up PREFIX N [SUBNET]  make PREFIX-head and hosts PREFIX-h0 .. PREFIX-h(N-1)
#   netns-hosts.sh down PREFIX           kill every process inside PREFIX-*, delete the namespaces
#   netns-hosts.sh pids NAME             the pids of the processes inside namespace NAME
#   netns-hosts.sh kill NAME             SIGKILL every process inside namespace NAME (a lost host)
#   netns-hosts.sh gc                    delete leftovers of crashed runs (see below)
#
# Topology (SUBNET defaults to 10.213.0; it only exists inside these namespaces, so
# parallel runs may use the same one without seeing each other):
#
#   PREFIX-head: lo, br0 = SUBNET.1/24 (a bridge), p0 .. p(N-1) enslaved to br0
#   PREFIX-hI:   lo, eth0 = SUBNET.(10+I)/24, the veth peer of pI in PREFIX-head
#
# mpirun runs in PREFIX-head (a login node that is also the switch); the hosts run
# orted and the ranks. Every link is created directly inside the namespaces, never in
# the root namespace, so deleting the namespaces removes every link, and no packet can
# leave them. A namespace name is also the host name (see rsh-agent.sh).
#
# PREFIX should be unique per run; the tests use ntkmh-<owner pid>-<random>. `gc`
# deletes the ntkmh-<pid>-* namespaces whose owner pid no longer exists.
set -eEuo pipefail

IP=$(command -v ip || true)
for candidate in /usr/sbin/ip /sbin/ip; do
    [[ -n $IP ]] && break
    [[ -x $candidate ]] && IP=$candidate
done

die() { echo "netns-hosts: $*" >&2; exit 1; }

namespaces() { # the namespaces whose name starts with $1-
    "$IP" netns list 2>/dev/null | awk '{print $1}' | grep -E "^$(printf '%s' "$1" | sed 's/[.[\*^$]/\\&/g')-" || true
}

pids_of() { "$IP" netns pids "$1" 2>/dev/null || true; }

kill_all() { # SIGKILL everything in namespace $1 until nothing is left (at most ~5 s)
    local ns=$1 tries=0 pids
    while :; do
        pids=$(pids_of "$ns")
        [[ -z $pids ]] && return 0
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null || true
        ((++tries > 50)) && { echo "netns-hosts: processes survive in $ns: $pids" >&2; return 1; }
        sleep 0.1
    done
}

check() {
    if [[ $(id -u) -ne 0 ]]; then echo "not root (uid $(id -u)): network namespaces need root"; exit 2; fi
    if [[ -z $IP ]]; then echo "no ip command (install iproute2: scripts/setup.sh)"; exit 2; fi
    command -v unshare >/dev/null || { echo "no unshare command (util-linux)"; exit 2; }
    local probe="ntkmh-probe-$$-$RANDOM" err
    if ! err=$("$IP" netns add "$probe" 2>&1); then
        echo "netns creation refused: $err"; exit 2
    fi
    if ! err=$("$IP" -n "$probe" link add a0 type veth peer name b0 2>&1 && "$IP" -n "$probe" link set lo up 2>&1 \
               && "$IP" netns exec "$probe" true 2>&1); then
        "$IP" netns del "$probe" 2>/dev/null || true
        echo "veth or ip netns exec refused: $err"; exit 2
    fi
    "$IP" netns del "$probe"
    echo "ok"
}

up() {
    local prefix=$1 n=$2 subnet=${3:-10.213.0}
    [[ $prefix =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad prefix '$prefix'"
    [[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 200 ]] || die "bad host count '$n'"
    [[ -z $(namespaces "$prefix") ]] || die "namespaces $prefix-* exist already"
    # Undo a half-made set on any failure.
    trap 'down "$prefix" >/dev/null 2>&1 || true' ERR
    local head="$prefix-head"
    "$IP" netns add "$head"
    "$IP" -n "$head" link set lo up
    "$IP" -n "$head" link add br0 type bridge
    "$IP" -n "$head" addr add "$subnet.1/24" dev br0
    "$IP" -n "$head" link set br0 up
    local i host
    for ((i = 0; i < n; i++)); do
        host="$prefix-h$i"
        "$IP" netns add "$host"
        "$IP" -n "$host" link set lo up
        "$IP" -n "$head" link add "p$i" type veth peer name eth0 netns "$host"
        "$IP" -n "$head" link set "p$i" master br0
        "$IP" -n "$head" link set "p$i" up
        "$IP" -n "$host" addr add "$subnet.$((10 + i))/24" dev eth0
        "$IP" -n "$host" link set eth0 up
    done
    trap - ERR
    # Give the bridge ports a moment to forward; with ping at hand, wait for every host.
    if command -v ping >/dev/null; then
        for ((i = 0; i < n; i++)); do
            "$IP" netns exec "$head" ping -c 1 -W 1 -w 5 "$subnet.$((10 + i))" >/dev/null 2>&1 \
                || echo "netns-hosts: warning: $prefix-h$i does not answer ping yet" >&2
        done
    else
        sleep 0.2
    fi
    for ((i = 0; i < n; i++)); do echo "$prefix-h$i"; done
}

down() {
    local prefix=$1 ns status=0
    [[ -n $prefix ]] || die "no prefix"
    for ns in $(namespaces "$prefix"); do
        kill_all "$ns" || status=1
        "$IP" netns del "$ns" || status=1
    done
    return $status
}

gc() {
    local ns owner
    for ns in $("$IP" netns list 2>/dev/null | awk '{print $1}' | grep -E '^ntkmh-[0-9]+-' || true); do
        owner=${ns#ntkmh-}; owner=${owner%%-*}
        if ! kill -0 "$owner" 2>/dev/null; then
            kill_all "$ns" || true
            "$IP" netns del "$ns" 2>/dev/null && echo "netns-hosts: removed stale $ns" >&2 || true
        fi
    done
}

case ${1:-} in
    check) check ;;
    up) [[ $# -ge 3 ]] || die "usage: $0 up PREFIX N [SUBNET]"; [[ -n $IP ]] || die "no ip command"; up "$2" "$3" "${4:-}" ;;
    down) [[ $# -eq 2 ]] || die "usage: $0 down PREFIX"; down "$2" ;;
    pids) [[ $# -eq 2 ]] || die "usage: $0 pids NAME"; pids_of "$2" ;;
    kill) [[ $# -eq 2 ]] || die "usage: $0 kill NAME"; kill_all "$2" ;;
    gc) gc ;;
    *) sed -n '2,9p' "$0" >&2; exit 64 ;;
esac
