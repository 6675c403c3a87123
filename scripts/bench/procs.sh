# Process groups for the benchmark scripts: every program they start leads its own group, so
# stopping it stops its children too; nothing is ever killed by name. Sourced by bench.sh and
# fairness.sh.

GROUPS_STARTED=() # pids of the process-group leaders we started, in start order

# start_group LOG CMD...: runs CMD as the leader of a new process group (setsid) with its
# output in LOG; sets STARTED to its pid. In a non-interactive script a background job is not
# a group leader, so setsid does not fork and $! is the command itself.
start_group() {
    local logf=$1
    shift
    # Emptied here, not only by the child's redirection: a caller that reads LOG at once for a
    # line of the new process must never find the last run's.
    : >"$logf"
    setsid "$@" </dev/null >>"$logf" 2>&1 &
    STARTED=$!
    GROUPS_STARTED+=("$STARTED")
}

# stop_group PID: TERM to the group, then KILL if it is still there after 5 s.
stop_group() {
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
}
