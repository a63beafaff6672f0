#!/usr/bin/env bash
# cluster/slurm/ntk-gram.sbatch under a real Slurm: a one-node cluster started here
# (munged, slurmctld and slurmd from Debian's slurmd/slurmctld/munge packages, in a
# temporary directory, on free ports), jobs submitted with sbatch, the real ntk launched by
# srun through PMIx on 2 tasks (a small network on data/digits.npy, 120 tiles, each slowed
# by NTK_TILE_DELAY_MS so that a stop lands mid-run). Checks:
#   1. an uninterrupted job: COMPLETED, exit 0, the reference files;
#   2. `scancel --signal=USR1 --batch` (what #SBATCH --signal=B:USR1@600 sends before the
#      time limit): ntk stops with 75, the script requeues, Slurm starts the job again
#      (Restarts=1), it resumes from the saved tiles and writes files bitwise equal to 1's;
#   3. `scancel --signal=TERM --batch` (preemption, the time limit): ntk stops with 75, the
#      job ends (FAILED, exit 75) and is not requeued;
#   4. a rank killed with SIGKILL (a node failure as the step sees it): srun ends the step,
#      the script requeues, the job resumes and its files are bitwise equal to 1's;
#   5. a failure that would only repeat (no such binary): FAILED, not requeued.
# (predict, train and converge go through the same script and status handling:
# cluster/test-batch-scripts.sh runs predict's requeue cycle with stand-in commands.)
# Usage: cluster/test-slurm.sh    (NTK_BIN=path/to/ntk; default .build/release/ntk, else
#        .build/debug/ntk). Needs root (slurmd starts job steps as their user), Slurm
#        and MUNGE installed (scripts/setup.sh installs them). Exits 77 with the reason when
#        Slurm cannot run here (not installed, not root, the daemons do not come up, or a
#        plain 2-task srun of ntk fails); takes about 45 s; stops every daemon it started
#        and removes everything it created.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
skip() { echo "SKIP test-slurm: $*"; exit 77; }

ntk="${NTK_BIN:-}"
if [[ -z $ntk ]]; then
    for candidate in "$repo/.build/release/ntk" "$repo/.build/debug/ntk"; do
        if [[ -x $candidate ]]; then ntk="$candidate"; break; fi
    done
fi
[[ -n $ntk && -x $ntk ]] || { echo "test-slurm: no ntk binary; build it or set NTK_BIN" >&2; exit 1; }
ntk="$(cd "$(dirname "$ntk")" && pwd)/$(basename "$ntk")"   # the jobs run in another directory
for tool in munged slurmctld slurmd sbatch srun scontrol scancel sinfo; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || skip "$tool is not installed (Debian: apt-get install slurmd slurmctld munge)"
done
PATH="$PATH:/usr/sbin"
[[ $(id -u) -eq 0 ]] || skip "slurmd must run as root to start job steps; run this as root"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ntk-slurm-test.XXXXXX")"
chmod 755 "$tmp"   # munged refuses a socket directory others could write to
cleanup() {
    local f
    if [[ -n ${SLURM_CONF:-} && -f $tmp/slurmctld.pid ]]; then
        scancel --quiet --full --signal=KILL --user=root 2>/dev/null || true
    fi
    for f in slurmd slurmctld munged; do
        [[ -f $tmp/$f.pid ]] && kill -TERM "$(cat "$tmp/$f.pid")" 2>/dev/null || true
    done
    sleep 1
    for f in slurmd slurmctld munged; do
        [[ -f $tmp/$f.pid ]] && kill -KILL "$(cat "$tmp/$f.pid")" 2>/dev/null || true
    done
    pkill -KILL -f "$tmp/" 2>/dev/null || true   # ranks of a job that outlived its daemons
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pass() { echo "ok   $* (${SECONDS} s)"; }
fail() {
    echo "FAIL $*" >&2
    local f
    for f in "$tmp"/job-*.out "$tmp"/log/*.log; do [[ -e $f ]] && { echo "--- $f" >&2; tail -n 25 "$f" >&2; }; done
    exit 1
}

# ---- A one-node cluster -----------------------------------------------------------------
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/log"
mungekey --create --keyfile="$tmp/munge.key" --bits=1024 2>/dev/null ||
    dd if=/dev/urandom of="$tmp/munge.key" bs=128 count=1 status=none
chmod 600 "$tmp/munge.key"
munged --key-file="$tmp/munge.key" --socket="$tmp/munge.sock" --pid-file="$tmp/munged.pid" \
    --log-file="$tmp/log/munged.log" --seed-file="$tmp/munge.seed" ||
    skip "munged did not start: $(tail -n 3 "$tmp/log/munged.log" 2>/dev/null)"

free_port() {  # a TCP port nothing listens on, from a range clear of Slurm's defaults
    local port
    for ((i = 0; i < 100; i++)); do
        port=$((20000 + RANDOM % 20000))
        ss -Htln "sport = :$port" 2>/dev/null | grep -q . || { echo "$port"; return; }
    done
    echo 26817
}
node=$(hostname -s)
memory=$(awk '/MemTotal/ { print int($2 / 1024 * 0.8) }' /proc/meminfo)
ctld_port=$(free_port)
slurmd_port=$(free_port)
[[ $slurmd_port != "$ctld_port" ]] || slurmd_port=$((ctld_port + 1))
export SLURM_CONF="$tmp/slurm.conf"
cat > "$SLURM_CONF" <<EOF
ClusterName=ntktest
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
# cred_expire: how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$tmp/munge.sock,cred_expire=5
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ReturnToService=2
JobRequeue=1
MpiDefault=none
InactiveLimit=0
KillWait=2
MinJobAge=600
NodeName=$node CPUs=$(nproc) RealMemory=$memory State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF" 2>"$tmp/log/slurmctld.start" ||
    skip "slurmctld did not start: $(cat "$tmp/log/slurmctld.start") $(tail -n 3 "$tmp/log/slurmctld.log" 2>/dev/null)"
slurmd -f "$SLURM_CONF" 2>"$tmp/log/slurmd.start" ||
    skip "slurmd did not start: $(cat "$tmp/log/slurmd.start") $(tail -n 3 "$tmp/log/slurmd.log" 2>/dev/null)"
up=""
for ((i = 0; i < 300; i++)); do
    if [[ $(sinfo --noheader --format=%t 2>/dev/null) == idle* ]]; then up=1; break; fi
    sleep 0.1
done
[[ -n $up ]] || skip "the one-node cluster did not come up in 30 s: $(sinfo 2>&1 | tail -n 1); $(tail -n 3 "$tmp/log/slurmd.log" 2>/dev/null)"
echo "one-node Slurm cluster $(sinfo --version) on $node: ports $ctld_port/$slurmd_port, $(nproc) CPUs"

# Can this machine start an MPI step through Slurm at all (srun, PMIx, 2 tasks)? A sandbox
# may run the daemons but forbid what a step needs; that is a reason to skip, not a
# failure of the batch script. Everything after this is the script's to pass.
if ! timeout 120 srun --ntasks=2 --mpi=pmix --kill-on-bad-exit=1 "$ntk" gram --data "$repo/data/digits.npy" \
        --depth 0 --eigen none --no-checkpoint --no-progress --quiet --out "$tmp/srun-check" > "$tmp/log/srun-check.log" 2>&1; then
    skip "Slurm runs, but srun cannot start a 2-task PMIx step of ntk here: $(tail -n 3 "$tmp/log/srun-check.log" | tr '\n' ' ')"
fi

# ---- Jobs -------------------------------------------------------------------------------
field() { scontrol show job "$1" --oneliner 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
wait_state() {  # wait_state JOB RESTARTS: until the job has ended after RESTARTS restarts (60 s at most)
    local state
    for ((i = 0; i < 600; i++)); do
        state=$(field "$1" JobState)
        case $state in
            COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | PREEMPTED)
                [[ $(field "$1" Restarts) -ge $2 ]] && return 0 ;;
        esac
        sleep 0.1
    done
    fail "job $1 did not end within 60 s (state $state, restarts $(field "$1" Restarts))"
}
# Whole tile records in a checkpoint's logs.
tiles_in() { python3 "$here/checkpoint-tiles.py" "$1"; }
wait_for_tiles() {  # until DIR holds at least N tiles, at most 60 s
    for ((i = 0; i < 600; i++)); do
        (($(tiles_in "$1") >= $2)) && return 0
        sleep 0.1
    done
    fail "no $2 tiles appeared in $1"
}
reused() { sed -n 's/.*"tiles_reused" *: *\([0-9]*\).*/\1/p' "$1/summary.json"; }
same_files() {  # bitwise comparison of the result files with job 1's
    local f
    for f in kernel.npy eigenvalues.npy outputs.npy; do
        cmp -s "$1/$f" "$tmp/ref/$f" || fail "$1/$f differs from the uninterrupted job's"
    done
}
sbatch_script="$repo/cluster/slurm/ntk-gram.sbatch"
submit() {  # submit NAME VAR=VALUE...: the batch script as a 2-task job; its id in $job
    local name=$1
    shift
    local exports="ALL,NTK_BIN=$ntk,NTK_DATA=$repo/data/digits.npy,NTK_MODEL=$tmp/model.json,NTK_PARAMS=$tmp/params.npz"
    local assignment
    for assignment in "$@"; do exports+=",$assignment"; done
    job=$(NTK_EXTRA_ARGS="${extra_args:---tile 128 --no-progress}" \
          sbatch --parsable --ntasks=2 --job-name="ntk-$name" --chdir="$tmp" \
                 --output="$tmp/job-$name.out" --export="$exports" "$sbatch_script") ||
        fail "sbatch refused the $name job"
    job=${job%%;*}
}

cat > "$tmp/model.json" <<'EOF'
{"parameterization": "ntk",
 "layers": [{"type": "dense", "width": 32, "W_std": 1.4142135623730951, "b_std": 0.1},
            {"type": "relu"},
            {"type": "dense", "width": 1, "W_std": 1.4142135623730951, "b_std": 0.1}]}
EOF
"$ntk" init --model "$tmp/model.json" --seed 7 --input-width 64 --out "$tmp/params.npz" > /dev/null

# 1. Uninterrupted.
submit ref NTK_OUT="$tmp/ref"
wait_state "$job" 0
[[ $(field "$job" JobState) == COMPLETED && $(field "$job" ExitCode) == 0:0 ]] ||
    fail "job 1 ended $(field "$job" JobState) with $(field "$job" ExitCode)"
[[ -f $tmp/ref/summary.json ]] || fail "job 1 wrote no summary.json"
pass "uninterrupted job $job: COMPLETED, srun --mpi=pmix on 2 tasks"

# 2. USR1 to the batch shell -> 75 -> scontrol requeue -> Slurm restarts it -> resumed.
submit usr1 NTK_OUT="$tmp/usr1" NTK_TILE_DELAY_MS=80
wait_for_tiles "$tmp/usr1/checkpoint" 6
scancel --signal=USR1 --batch "$job"
wait_state "$job" 1
log="$tmp/job-usr1.out"
[[ $(field "$job" JobState) == COMPLETED ]] || fail "USR1: the job ended $(field "$job" JobState) $(field "$job" ExitCode)"
[[ $(field "$job" Restarts) == 1 ]] || fail "USR1: $(field "$job" Restarts) restarts, expected 1"
grep -q "stopped by SIGUSR1" "$log" || fail "USR1: ntk did not report the stop"
grep -q "requeued job $job" "$log" || fail "USR1: the script did not requeue"
grep -q "restart 1," "$log" || fail "USR1: no second start in the log"
n=$(reused "$tmp/usr1")
((n > 0)) || fail "USR1: the requeued start reused no tiles"
same_files "$tmp/usr1"
pass "USR1 (scancel --signal=USR1 --batch): exit 75, requeued, restarted by Slurm, $n tiles reused, files bitwise equal"

# 3. TERM to the batch shell: ntk stops, the job ends and is not requeued.
submit term NTK_OUT="$tmp/term" NTK_TILE_DELAY_MS=80
wait_for_tiles "$tmp/term/checkpoint" 4
scancel --signal=TERM --batch "$job"
wait_state "$job" 0
log="$tmp/job-term.out"
[[ $(field "$job" JobState) == FAILED && $(field "$job" ExitCode) == 75:0 ]] ||
    fail "TERM: the job ended $(field "$job" JobState) with $(field "$job" ExitCode), expected FAILED 75:0"
[[ $(field "$job" Restarts) == 0 ]] || fail "TERM: the job was requeued"
grep -q "SIGTERM received" "$log" || fail "TERM: the batch shell did not see TERM"
grep -q "stopped by SIGUSR1" "$log" || fail "TERM: ntk was not asked to stop"
grep -q "not requeued" "$log" || fail "TERM: the script did not say that it does not requeue"
(($(tiles_in "$tmp/term/checkpoint") > 0)) || fail "TERM: the saved tiles are gone"
pass "TERM (scancel --signal=TERM --batch): exit 75, job FAILED 75:0, not requeued, tiles kept"

# 4. A rank killed (SIGKILL, as a lost node looks to the step) -> requeued -> resumed.
submit kill NTK_OUT="$tmp/kill" NTK_TILE_DELAY_MS=80
wait_for_tiles "$tmp/kill/checkpoint" 6
victim=$(pgrep -f -n -- "^$ntk gram .*--out $tmp/kill ") || fail "KILL: no rank of the job found"
kill -KILL "$victim"
wait_state "$job" 1
log="$tmp/job-kill.out"
[[ $(field "$job" JobState) == COMPLETED && $(field "$job" Restarts) == 1 ]] ||
    fail "KILL: the job ended $(field "$job" JobState) after $(field "$job" Restarts) restarts"
grep -q "requeued job $job" "$log" || fail "KILL: the script did not requeue"
n=$(reused "$tmp/kill")
((n > 0)) || fail "KILL: the requeued start reused no tiles"
same_files "$tmp/kill"
pass "a rank killed: the step failed ($(sed -n 's/.*ntk exited with status \([0-9]*\).*/\1/p' "$log" | head -n 1)), requeued, $n tiles reused, files bitwise equal"

# 5. A failure that would only repeat (no such binary) is not requeued.
submit missing NTK_OUT="$tmp/missing" NTK_BIN="$tmp/no-such-ntk"
wait_state "$job" 0
[[ $(field "$job" JobState) == FAILED && $(field "$job" Restarts) == 0 ]] ||
    fail "a missing binary: the job ended $(field "$job" JobState) after $(field "$job" Restarts) restarts"
grep -q "requeued" "$tmp/job-missing.out" && fail "a missing binary: the script requeued"
pass "a launch failure (no such binary, exit $(field "$job" ExitCode)): FAILED, not requeued"

echo "all Slurm checks passed"
