#!/usr/bin/env bash
# Dry run of cluster/slurm/ntk-gram.sbatch and cluster/pbs/ntk-gram.pbs without a
# scheduler. Fake srun, scontrol, qstat, qrerun and qsub in a temporary PATH; the real
# ntk runs under mpirun on 2 ranks (a small network on data/digits.npy, 120 tiles), each
# tile slowed by NTK_TILE_DELAY_MS so that a stop lands mid-run. Checks:
#   SLURM  USR1 to the batch shell -> ntk stops, exit 75 -> `scontrol requeue <job id>`;
#          the requeued start resumes (tiles_reused > 0) and writes files bitwise equal
#          to an uninterrupted run's; a further start finds the result and does nothing;
#          TERM to the batch shell stops ntk too but does not requeue; the requeue
#          limit holds; ntk's own errors (65) pass through without a requeue.
#   PBS    the script's own alarm (walltime from qstat minus the margin) -> USR1 -> 75 ->
#          qrerun refused -> qsub -W depend=afterany:<job id> of the script; the next
#          start (checkpoint in its own directory) resumes, bitwise equal again; where
#          qrerun is allowed it is used instead of qsub.
# Usage: cluster/test-batch-scripts.sh    (NTK_BIN=path/to/ntk picks the binary; default
#        .build/release/ntk, else .build/debug/ntk). Needs bash and Open MPI's mpirun;
#        takes 15-40 s; removes everything it created.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
ntk="${NTK_BIN:-}"
if [[ -z $ntk ]]; then
    for candidate in "$repo/.build/release/ntk" "$repo/.build/debug/ntk"; do
        if [[ -x $candidate ]]; then ntk="$candidate"; break; fi
    done
fi
[[ -n $ntk && -x $ntk ]] || { echo "test-batch-scripts: no ntk binary; build it or set NTK_BIN" >&2; exit 1; }
ntk="$(cd "$(dirname "$ntk")" && pwd)/$(basename "$ntk")"   # the PBS script runs in PBS_O_WORKDIR
command -v mpirun >/dev/null || { echo "test-batch-scripts: mpirun not found" >&2; exit 1; }
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OPENBLAS_NUM_THREADS=1

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ntk-batch-test.XXXXXX")"
started=()   # the batch shells this test started (each run in the background)
cleanup() {
    local pid
    for pid in "${started[@]}"; do
        # A batch shell still running passes TERM on to its mpirun; the ranks then stop
        # at the next tile boundary and everything exits.
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${started[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# start CMD...: run a batch shell in the background (its pid in $shell); collect: wait
# for it, its exit status in $status.
start() { "$@" & shell=$!; started+=("$shell"); }
collect() { status=0; wait "$shell" || status=$?; }

pass() { echo "ok   $*"; }
fail() {
    echo "FAIL $*" >&2
    for f in "$tmp"/*.log; do [[ -e $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    exit 1
}
count_lines() { if [[ -f $1 ]]; then wc -l < "$1"; else echo 0; fi; }
# Whole tile records in a checkpoint's logs.
tiles_in() { python3 "$here/checkpoint-tiles.py" "$1"; }
reused() { sed -n 's/.*"tiles_reused" *: *\([0-9]*\).*/\1/p' "$1/summary.json"; }
same_files() {  # bitwise comparison of the result files with the reference
    local f
    for f in kernel.npy eigenvalues.npy outputs.npy; do
        cmp -s "$1/$f" "$tmp/ref/$f" || fail "$1/$f differs from the uninterrupted run's"
    done
}
wait_for_tiles() {  # until DIR holds at least N tiles, at most 30 s
    local i
    for ((i = 0; i < 300; i++)); do
        (($(tiles_in "$1") >= $2)) && return 0
        sleep 0.1
    done
    fail "no $2 tiles appeared in $1"
}

# ---- Fixture: a small network on the bundled digits (1797 x 64), 120 tiles of 128 --
cat > "$tmp/model.json" <<'EOF'
{"parameterization": "ntk",
 "layers": [{"type": "dense", "width": 32, "W_std": 1.4142135623730951, "b_std": 0.1},
            {"type": "relu"},
            {"type": "dense", "width": 1, "W_std": 1.4142135623730951, "b_std": 0.1}]}
EOF
"$ntk" init --model "$tmp/model.json" --seed 7 --input-width 64 --out "$tmp/params.npz" > /dev/null
export NTK_BIN="$ntk" NTK_DATA="$repo/data/digits.npy" NTK_MODEL="$tmp/model.json" \
       NTK_PARAMS="$tmp/params.npz" NTK_EXTRA_ARGS="--tile 128 --no-progress"
export NTK_TEST_LOGS="$tmp"

mpirun --oversubscribe --bind-to none --timeout 60 -np 2 "$ntk" gram --data "$NTK_DATA" \
    --model "$NTK_MODEL" --params "$NTK_PARAMS" --tile 128 --out "$tmp/ref" --no-checkpoint --quiet \
    > "$tmp/reference.log" 2>&1 || fail "the uninterrupted reference run"
pass "uninterrupted reference run (2 ranks)"

# ---- Fake scheduler commands ------------------------------------------------------------
mkdir -p "$tmp/bin"
cat > "$tmp/bin/srun" <<'EOF'
#!/usr/bin/env bash
# fake srun: drop srun's own options, run the command under mpirun on SLURM_NTASKS ranks
echo "srun $*" >> "$NTK_TEST_LOGS/srun.calls"
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
exec mpirun --oversubscribe --bind-to none --timeout 60 -np "${SLURM_NTASKS:-2}" "$@"
EOF
cat > "$tmp/bin/scontrol" <<'EOF'
#!/usr/bin/env bash
echo "scontrol $*" >> "$NTK_TEST_LOGS/scontrol.calls"
EOF
cat > "$tmp/bin/qstat" <<'EOF'
#!/usr/bin/env bash
# fake qstat -f: a walltime 2 s longer than the script's default 600 s margin
echo "Job Id: $2"
echo "    Resource_List.walltime = 00:10:02"
EOF
cat > "$tmp/bin/qrerun" <<'EOF'
#!/usr/bin/env bash
echo "qrerun $*" >> "$NTK_TEST_LOGS/qrerun.calls"
[[ -n ${FAKE_QRERUN_OK:-} ]] && exit 0
echo "qrerun: Unauthorized Request  $*" >&2
exit 159
EOF
cat > "$tmp/bin/qsub" <<'EOF'
#!/usr/bin/env bash
printf '%s\n' "$*" >> "$NTK_TEST_LOGS/qsub.calls"
echo "4244.fake-server"
EOF
chmod +x "$tmp/bin"/*
fakepath="$tmp/bin:$PATH"

# ---- SLURM ------------------------------------------------------------------------------
sbatch_script="$repo/cluster/slurm/ntk-gram.sbatch"
slurm_out="$tmp/slurm-out"

# 1. First start: USR1 to the batch shell mid-run.
PATH="$fakepath" SLURM_JOB_ID=4242 SLURM_NTASKS=2 NTK_OUT="$slurm_out" NTK_TILE_DELAY_MS=200 \
    start bash "$sbatch_script" > "$tmp/slurm-1.log" 2>&1
wait_for_tiles "$slurm_out/checkpoint" 6
kill -USR1 "$shell"
collect
((status == 75)) || fail "SLURM: status $status after USR1, expected 75"
grep -q "stopped by SIGUSR1" "$tmp/slurm-1.log" || fail "SLURM: ntk did not report the stop"
grep -q "no checkpoint to resume" "$tmp/slurm-1.log" || fail "SLURM: the fresh start did not warn about --resume"
[[ $(cat "$tmp/scontrol.calls" 2>/dev/null) == "scontrol requeue 4242" ]] || fail "SLURM: no 'scontrol requeue 4242'"
[[ ! -e $slurm_out/summary.json ]] || fail "SLURM: a result after the stop"
saved=$(tiles_in "$slurm_out/checkpoint")
((saved < 120)) || fail "SLURM: the run was not interrupted (all $saved tiles saved)"
pass "SLURM: USR1 -> ntk stopped with $saved of 120 tiles saved, exit 75, scontrol requeue 4242"

# 2. The requeued start (Slurm sets SLURM_RESTART_COUNT): resumes and finishes.
PATH="$fakepath" SLURM_JOB_ID=4242 SLURM_NTASKS=2 SLURM_RESTART_COUNT=1 NTK_OUT="$slurm_out" \
    start bash "$sbatch_script" > "$tmp/slurm-2.log" 2>&1
collect
((status == 0)) || fail "SLURM: the requeued start ended with $status"
n=$(reused "$slurm_out")
((n >= saved)) || fail "SLURM: the requeued start reused $n tiles, expected at least $saved"
same_files "$slurm_out"
(($(count_lines "$tmp/scontrol.calls") == 1)) || fail "SLURM: requeued again after success"
[[ ! -e $slurm_out/checkpoint ]] || fail "SLURM: the default checkpoint was not removed after success"
pass "SLURM: requeued start resumed ($n tiles reused), files bitwise equal to the uninterrupted run"

# 3. A further start over the finished result runs nothing: an error (73) unless
#    NTK_SKIP_DONE=1 accepts it (exit 0).
calls=$(count_lines "$tmp/srun.calls")
PATH="$fakepath" SLURM_JOB_ID=4242 SLURM_NTASKS=2 SLURM_RESTART_COUNT=2 NTK_OUT="$slurm_out" \
    start bash "$sbatch_script" > "$tmp/slurm-3.log" 2>&1
collect
((status == 73)) || fail "SLURM: the start after completion ended with $status, expected 73"
grep -q "ERROR: .* already holds a finished result" "$tmp/slurm-3.log" || fail "SLURM: no error about the finished result"
PATH="$fakepath" SLURM_JOB_ID=4242 SLURM_NTASKS=2 SLURM_RESTART_COUNT=2 NTK_OUT="$slurm_out" NTK_SKIP_DONE=1 \
    start bash "$sbatch_script" > "$tmp/slurm-3b.log" 2>&1
collect
((status == 0)) || fail "SLURM: the start after completion with NTK_SKIP_DONE=1 ended with $status"
(($(count_lines "$tmp/srun.calls") == calls)) || fail "SLURM: ntk ran again over a finished result"
pass "SLURM: a start after completion runs nothing: exit 73 with an error, or 0 with NTK_SKIP_DONE=1"

# 4. TERM to the batch shell (scancel, preemption) stops ntk too, passed on as USR1, but
#    the job is not requeued: it is meant to end.
PATH="$fakepath" SLURM_JOB_ID=4243 SLURM_NTASKS=2 NTK_OUT="$tmp/slurm-out-2" NTK_TILE_DELAY_MS=200 \
    start bash "$sbatch_script" > "$tmp/slurm-4.log" 2>&1
wait_for_tiles "$tmp/slurm-out-2/checkpoint" 2
kill -TERM "$shell"
collect
((status == 75)) || fail "SLURM: status $status after TERM, expected 75"
grep -q "SIGTERM received" "$tmp/slurm-4.log" || fail "SLURM: the batch shell did not see TERM"
grep -q "stopped by SIGUSR1" "$tmp/slurm-4.log" || fail "SLURM: TERM was not passed on to ntk (as USR1)"
(($(count_lines "$tmp/scontrol.calls") == 1)) || fail "SLURM: requeued after TERM"
pass "SLURM: TERM to the batch shell stops ntk (passed on as USR1, exit 75), no requeue"

# 4b. The same script for ntk predict (NTK_COMMAND): USR1 -> 75 -> requeue; the requeued
#     start resumes its kernels' tiles and writes predictions bitwise equal to an
#     uninterrupted run's; a further start finds summary.json and does nothing.
cat > "$tmp/model10.json" <<'EOF2'
{"layers": [{"type": "dense", "width": 32, "W_std": 1.4142135623730951, "b_std": 0.1},
            {"type": "relu"},
            {"type": "dense", "width": 10, "W_std": 1.4142135623730951, "b_std": 0.1}]}
EOF2
predict_flags="--tile 128 --no-progress --seed 3 --learning-rate 1 --times 1,inf"
# shellcheck disable=SC2086
mpirun --oversubscribe --bind-to none --timeout 60 -np 2 "$ntk" predict --train "$NTK_DATA" --targets "$repo/data/digits_labels.npy" \
    --model "$tmp/model10.json" $predict_flags --out "$tmp/predict-ref" --no-checkpoint --quiet > "$tmp/predict-ref.log" 2>&1 ||
    fail "the uninterrupted predict run"
predict_env=(NTK_COMMAND=predict NTK_TARGETS="$repo/data/digits_labels.npy" NTK_MODEL="$tmp/model10.json" NTK_PARAMS=
             NTK_EXTRA_ARGS="$predict_flags" NTK_OUT="$tmp/slurm-predict")
start env PATH="$fakepath" SLURM_JOB_ID=4250 SLURM_NTASKS=2 NTK_TILE_DELAY_MS=200 "${predict_env[@]}" \
    bash "$sbatch_script" > "$tmp/slurm-p1.log" 2>&1
wait_for_tiles "$tmp/slurm-predict/checkpoint/train" 6
kill -USR1 "$shell"
collect
((status == 75)) || fail "SLURM predict: status $status after USR1, expected 75"
[[ $(tail -n 1 "$tmp/scontrol.calls") == "scontrol requeue 4250" ]] || fail "SLURM predict: no 'scontrol requeue 4250'"
start env PATH="$fakepath" SLURM_JOB_ID=4250 SLURM_NTASKS=2 SLURM_RESTART_COUNT=1 "${predict_env[@]}" \
    bash "$sbatch_script" > "$tmp/slurm-p2.log" 2>&1
collect
((status == 0)) || fail "SLURM predict: the requeued start ended with $status"
cmp -s "$tmp/slurm-predict/train_predictions.npy" "$tmp/predict-ref/train_predictions.npy" ||
    fail "SLURM predict: predictions differ from the uninterrupted run's"
calls=$(count_lines "$tmp/srun.calls")
start env PATH="$fakepath" SLURM_JOB_ID=4250 SLURM_NTASKS=2 SLURM_RESTART_COUNT=2 "${predict_env[@]}" \
    bash "$sbatch_script" > "$tmp/slurm-p3.log" 2>&1
collect
((status == 73)) && (($(count_lines "$tmp/srun.calls") == calls)) || fail "SLURM predict: ran again over a finished result, or did not say so"
(($(count_lines "$tmp/scontrol.calls") == 2)) || fail "SLURM predict: requeued again after success"
pass "SLURM predict (NTK_COMMAND): USR1 -> 75 -> requeue -> resumed, predictions bitwise equal; a start after completion does nothing"

# 5. Status handling alone, with a stand-in for ntk: 75 past NTK_MAX_REQUEUES is not
#    requeued; an input error (65) is passed through and not requeued.
cat > "$tmp/bin/fake-ntk" <<'EOF'
#!/bin/sh
exit "${FAKE_NTK_STATUS:-75}"
EOF
chmod +x "$tmp/bin/fake-ntk"
PATH="$fakepath" SLURM_JOB_ID=4245 SLURM_NTASKS=2 SLURM_RESTART_COUNT=3 NTK_MAX_REQUEUES=3 \
    NTK_BIN="$tmp/bin/fake-ntk" NTK_OUT="$tmp/slurm-out-3" start bash "$sbatch_script" > "$tmp/slurm-5.log" 2>&1
collect
((status == 75)) || fail "SLURM: status $status from the stand-in, expected 75"
grep -q "requeued 3 times already" "$tmp/slurm-5.log" || fail "SLURM: NTK_MAX_REQUEUES not reported"
PATH="$fakepath" SLURM_JOB_ID=4246 SLURM_NTASKS=2 FAKE_NTK_STATUS=65 \
    NTK_BIN="$tmp/bin/fake-ntk" NTK_OUT="$tmp/slurm-out-3" start bash "$sbatch_script" > "$tmp/slurm-6.log" 2>&1
collect
((status == 65)) || fail "SLURM: status $status, expected ntk's 65 passed through"
(($(count_lines "$tmp/scontrol.calls") == 2)) || fail "SLURM: requeued beyond NTK_MAX_REQUEUES or after exit 65"
pass "SLURM: no requeue beyond NTK_MAX_REQUEUES, nor after an input error (65, passed through)"

# 6. A rank killed (137) is requeued; another failure that is not ntk's own (2, srun's
#    status for a binary it cannot run) is not: it would only repeat.
PATH="$fakepath" SLURM_JOB_ID=4247 SLURM_NTASKS=2 FAKE_NTK_STATUS=137 \
    NTK_BIN="$tmp/bin/fake-ntk" NTK_OUT="$tmp/slurm-out-3" start bash "$sbatch_script" > "$tmp/slurm-7.log" 2>&1
collect
((status == 137)) && [[ $(tail -n 1 "$tmp/scontrol.calls") == "scontrol requeue 4247" ]] || fail "SLURM: status $status, no requeue after 137"
PATH="$fakepath" SLURM_JOB_ID=4248 SLURM_NTASKS=2 FAKE_NTK_STATUS=2 \
    NTK_BIN="$tmp/bin/fake-ntk" NTK_OUT="$tmp/slurm-out-3" start bash "$sbatch_script" > "$tmp/slurm-8.log" 2>&1
collect
((status == 2)) && (($(count_lines "$tmp/scontrol.calls") == 3)) || fail "SLURM: status $status, or requeued after status 2"
pass "SLURM: a killed rank (137) is requeued; a launch failure (2) is not"

# ---- PBS --------------------------------------------------------------------------------
pbs_script="$repo/cluster/pbs/ntk-gram.pbs"
pbs_out="$tmp/pbs-out"
mkdir -p "$tmp/pbswork"
printf 'localhost\nlocalhost\n' > "$tmp/nodefile"

# 1. First start: the script's alarm fires 2 s in (walltime 10:02, margin 600 s).
PATH="$fakepath" PBS_JOBID=4243.fake-server PBS_NODEFILE="$tmp/nodefile" PBS_O_WORKDIR="$tmp/pbswork" \
    NTK_OUT="$pbs_out" NTK_CHECKPOINT="$tmp/pbs-checkpoint" NTK_TILE_DELAY_MS=200 \
    start timeout 60 bash "$pbs_script" > "$tmp/pbs-1.log" 2>&1
collect
((status == 75)) || fail "PBS: status $status after the alarm, expected 75"
grep -q "walltime 00:10:02; USR1 in [12] s" "$tmp/pbs-1.log" || fail "PBS: the walltime from qstat was not used"
grep -q "SIGUSR1 received" "$tmp/pbs-1.log" || fail "PBS: the alarm did not fire"
grep -q "stopped by SIGUSR1" "$tmp/pbs-1.log" || fail "PBS: ntk did not report the stop"
[[ $(cat "$tmp/qrerun.calls" 2>/dev/null) == "qrerun 4243.fake-server" ]] || fail "PBS: qrerun not tried"
submitted=$(cat "$tmp/qsub.calls" 2>/dev/null)
[[ $submitted == "-W depend=afterany:4243.fake-server -v NTK_RESUBMIT_COUNT=1,"*"NTK_OUT=$pbs_out,"*" $tmp/pbswork/ntk-gram.pbs" ]] ||
    fail "PBS: unexpected resubmission: qsub $submitted"
saved=$(tiles_in "$tmp/pbs-checkpoint")
((saved > 0 && saved < 120)) || fail "PBS: $saved tiles saved, expected some but not all"
pass "PBS: alarm -> USR1 -> exit 75 with $saved tiles saved -> qrerun refused -> qsub -W depend=afterany:4243.fake-server"

# 2. The resubmitted job (qsub passes NTK_RESUBMIT_COUNT=1): resumes and finishes. Its
#    walltime is given by NTK_WALLTIME (an hour: no alarm during the test).
PATH="$fakepath" PBS_JOBID=4244.fake-server PBS_NODEFILE="$tmp/nodefile" PBS_O_WORKDIR="$tmp/pbswork" \
    NTK_OUT="$pbs_out" NTK_CHECKPOINT="$tmp/pbs-checkpoint" NTK_RESUBMIT_COUNT=1 NTK_WALLTIME=1:00:00 \
    start timeout 60 bash "$pbs_script" > "$tmp/pbs-2.log" 2>&1
collect
((status == 0)) || fail "PBS: the resubmitted job ended with $status"
n=$(reused "$pbs_out")
((n >= saved)) || fail "PBS: the resubmitted job reused $n tiles, expected at least $saved"
same_files "$pbs_out"
(($(tiles_in "$tmp/pbs-checkpoint") == 0)) || fail "PBS: checkpoint tiles left after success"
(($(count_lines "$tmp/qsub.calls") == 1)) || fail "PBS: resubmitted again after success"
pass "PBS: resubmitted job resumed ($n tiles reused), files bitwise equal to the uninterrupted run"

# 3. Where qrerun is allowed, it is used and nothing is submitted (stand-in for ntk).
PATH="$fakepath" PBS_JOBID=4245.fake-server PBS_NODEFILE="$tmp/nodefile" PBS_O_WORKDIR="$tmp/pbswork" \
    NTK_BIN="$tmp/bin/fake-ntk" NTK_OUT="$tmp/pbs-out-2" FAKE_QRERUN_OK=1 \
    start timeout 60 bash "$pbs_script" > "$tmp/pbs-3.log" 2>&1
collect
((status == 75)) || fail "PBS: status $status from the stand-in, expected 75"
[[ $(tail -n 1 "$tmp/qrerun.calls") == "qrerun 4245.fake-server" ]] || fail "PBS: qrerun not tried"
(($(count_lines "$tmp/qsub.calls") == 1)) || fail "PBS: resubmitted although qrerun succeeded"
pass "PBS: exit 75 where qrerun is allowed -> qrerun 4245.fake-server, no qsub"

echo "all batch-script checks passed"
