#!/usr/bin/env bash
# An "ssh" for Open MPI's rsh launcher that enters a network namespace instead of a
# remote machine:  mpirun --mca plm_rsh_agent scripts/netns/rsh-agent.sh ...
#
# Open MPI calls it as  AGENT [options] HOST COMMAND...  (COMMAND is a shell command line,
# as ssh would hand it to the remote shell). HOST is the name in the hostfile, which must
# be the name of a namespace made by netns-hosts.sh. The command runs inside that network
# namespace and in a new UTS namespace whose host name is HOST, so that orted and the
# ranks see distinct host names (Open MPI's session directories and node names are keyed
# on it). Everything else (file system, pids, environment) is shared with the caller.
set -euo pipefail

IP=$(command -v ip || true)
for candidate in /usr/sbin/ip /sbin/ip; do
    [[ -n $IP ]] && break
    [[ -x $candidate ]] && IP=$candidate
done
[[ -n $IP ]] || { echo "rsh-agent: no ip command" >&2; exit 255; }

# Skip ssh-style options (Open MPI passes plm_rsh_args, if any, before the host).
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
[[ $# -ge 2 ]] || { echo "rsh-agent: usage: $0 HOST COMMAND..." >&2; exit 255; }
host=$1; shift
# A trailing domain (host.example) is not part of a namespace name.
ns=$host
if [[ ! -e /run/netns/$ns ]]; then
    ns=${host%%.*}
    [[ -e /run/netns/$ns ]] || { echo "rsh-agent: no network namespace for host '$host' (see netns-hosts.sh)" >&2; exit 255; }
fi
# As ssh does, run the joined command line with a shell.
exec "$IP" netns exec "$ns" unshare --uts -- /bin/sh -c 'hostname "$1" && exec /bin/sh -c "$2"' rsh-agent "$ns" "$*"
