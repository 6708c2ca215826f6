# shellcheck shell=bash
# Helpers for a throwaway PostgreSQL 15 cluster, used by tools/test.sh,
# tools/demo.sh and test/scripts/*.sh.  Source this file; it only defines
# functions (no side effects), so callers decide on traps themselves:
#
#   . tools/cluster.sh
#   trap cluster_stop EXIT             # no-op until a cluster exists
#   cluster_start "work_mem = '8MB'"   # extra postgresql.conf lines
#
# All state lives in exported environment variables (BILLING_CLUSTER_DIR,
# PGPORT, ...), so a child script that sources this file can call
# cluster_crash / cluster_restart on its parent's cluster.
#
# Layout of $BILLING_CLUSTER_DIR: data/ (PGDATA), postgresql.log, and the
# unix socket (the dir is PGHOST).
#
# BILLING_SERVER_ENV (optional, exported like the rest): NAME=VALUE lines,
# one per line, added to the environment of pg_ctl and so of the server it
# starts, and of no other command (initdb, psql and the build keep theirs).
# tools/test.sh uses it to run a server under libfaketime:
#
#   export BILLING_SERVER_ENV=$'LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1\nFAKETIME=@2028-02-29 12:00:00'

PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

# The user that owns the cluster: initdb and postgres refuse to run as root,
# so root delegates to the "postgres" system user of the Debian package.
_cluster_owner() {
    if [[ $(id -u) -eq 0 ]]; then echo postgres; else id -un; fi
}

# Run a command as the cluster owner.  runuser (not su/sudo) because it needs
# no PAM password and keeps the environment (PG* variables) intact.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$(_cluster_owner)" -- "$@"
    else
        "$@"
    fi
}

# pg_ctl on our cluster.  cd into the cluster dir first so the owner can
# always access its cwd (root's cwd may be unreadable for "postgres").
# pg_ctl runs with BILLING_SERVER_ENV too: "pg_ctl start -w" accepts a
# postmaster.pid only if its start time is not before pg_ctl's own, so the
# two must share a faked clock.
cluster_pg_ctl() {
    : "${BILLING_CLUSTER_DIR:?no cluster started (BILLING_CLUSTER_DIR unset)}"
    local -a server_env=()
    if [[ -n ${BILLING_SERVER_ENV:-} ]]; then
        mapfile -t server_env <<<"$BILLING_SERVER_ENV"
    fi
    (cd "$BILLING_CLUSTER_DIR" &&
        as_owner env "${server_env[@]}" "$PG_BINDIR/pg_ctl" -D "$BILLING_CLUSTER_DIR/data" "$@")
}

# True if something accepts TCP connections on 127.0.0.1:$1 (bash /dev/tcp,
# so we need neither ss nor a postgres-specific probe).
_cluster_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_cluster_pg_start() {
    cluster_pg_ctl -w -t 60 -l "$BILLING_CLUSTER_DIR/postgresql.log" start >/dev/null
}

cluster_start() {
    local owner dir port
    owner=$(_cluster_owner)
    if ! id "$owner" >/dev/null 2>&1; then
        echo "cluster_start: user '$owner' missing (is postgresql-15 installed?)" >&2
        return 1
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/billing-pg.XXXXXX")
    # unix socket paths are limited to 107 bytes; fall back to /tmp for a
    # long $TMPDIR rather than failing later with a cryptic postmaster error.
    if (( ${#dir} > 80 )); then
        rmdir "$dir"
        dir=$(mktemp -d /tmp/billing-pg.XXXXXX)
    fi
    # 0755: other local users (and root) must reach the socket inside.
    chmod 0755 "$dir"
    if [[ $(id -u) -eq 0 ]]; then chown "$owner:" "$dir"; fi
    export BILLING_CLUSTER_DIR=$dir

    if ! (cd "$dir" && as_owner "$PG_BINDIR/initdb" -D "$dir/data" --auth=trust \
            --username=postgres --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1); then
        echo "cluster_start: initdb failed:" >&2
        cat "$dir/initdb.log" >&2
        cluster_stop
        return 1
    fi

    # Written through as_owner so the files belong to the server's user.
    # The port lives in its own included file so a retry can rewrite it.
    {
        echo "# --- added by tools/cluster.sh ---"
        echo "include = 'port.conf'"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        # pg_cron (postgresql-15-cron) is installed for the tests, not for
        # the demo.
        if [[ -f $PG_BINDIR/../lib/pg_cron.so ]]; then
            echo "shared_preload_libraries = 'pg_cron'"
            echo "cron.database_name = 'postgres'"
        fi
        echo "max_worker_processes = 16"
        echo "max_parallel_workers_per_gather = 2"
        echo "fsync = on"
        echo "log_min_messages = warning"
        if [[ $# -gt 0 ]]; then printf '%s\n' "$@"; fi
    } | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null

    # Probing a port and then starting is racy against parallel runs, so a
    # start whose (new) log lines say the bind failed moves on to the next
    # port; any other failure is final.
    local logpos
    for ((port = 54320; port < 54420; port++)); do
        _cluster_port_busy "$port" && continue
        echo "port = $port" | as_owner tee "$dir/data/port.conf" >/dev/null
        export PGPORT=$port
        logpos=$(( $(stat -c %s "$dir/postgresql.log" 2>/dev/null || echo 0) + 1 ))
        if _cluster_pg_start 2>"$dir/pg_ctl.err"; then
            export PGHOST=$dir PGUSER=postgres PGDATABASE=postgres
            return 0
        fi
        # (process substitution: grep -q in a pipe trips pipefail via SIGPIPE)
        grep -q 'could not bind' < <(tail -c "+$logpos" "$dir/postgresql.log") || break
    done
    echo "cluster_start: could not start PostgreSQL; log $dir/postgresql.log:" >&2
    cat "$dir/pg_ctl.err" >&2 || true
    tail -n 30 "$dir/postgresql.log" >&2 || true
    cluster_stop
    return 1
}

# For a test script: use the cluster of tools/test.sh when the environment
# names a running one, else start a throwaway one. Sets CLUSTER_OWNED to 1 in
# the second case, so the script's trap stops only a cluster it started.
cluster_use_or_start() {
    CLUSTER_OWNED=0
    if [[ -n ${BILLING_CLUSTER_DIR:-} && -n ${PGPORT:-} ]] && cluster_pg_ctl status >/dev/null 2>&1; then
        return 0
    fi
    echo "no running cluster in the environment: starting a throwaway one"
    # shellcheck disable=SC2119 # (no extra postgresql.conf lines)
    cluster_start || return 1
    # shellcheck disable=SC2034 # (read by the calling script)
    CLUSTER_OWNED=1
}

# Safe as an EXIT trap: never fails (a failing command in a trap would turn
# a successful run into exit 1) and is a no-op without a cluster.
cluster_stop() {
    [[ -n ${BILLING_CLUSTER_DIR:-} && -d $BILLING_CLUSTER_DIR ]] || return 0
    if [[ -f $BILLING_CLUSTER_DIR/data/postmaster.pid ]]; then
        cluster_pg_ctl -m fast stop >/dev/null 2>&1 || true
    fi
    if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
        echo "KEEP_CLUSTER=1: cluster files kept in $BILLING_CLUSTER_DIR" >&2
    else
        rm -rf -- "$BILLING_CLUSTER_DIR" || true
    fi
    return 0
}

# Simulate a crash (no shutdown checkpoint; next start does WAL recovery).
cluster_crash() {
    cluster_pg_ctl -m immediate stop >/dev/null
}

# Start again after cluster_crash (or any stop), same port and settings.
# (The port is free while the server is down; a parallel run grabbing it in
# that window makes this fail - acceptable for throwaway test clusters.)
cluster_restart() {
    _cluster_pg_start
}
