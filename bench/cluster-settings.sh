# shellcheck shell=bash
# The benchmark cluster's settings, shared by bench/run.sh and bench/part2.sh:
# fsync and synchronous_commit stay on (the defaults); wal_level = minimal
# only lets generate.sql skip WAL for the tables it creates.
bench_cluster_settings=(
    "shared_buffers = '2GB'"
    "work_mem = '64MB'"
    "max_parallel_workers_per_gather = 2"
    "jit = off"
    "wal_level = minimal"
    "max_wal_senders = 0"
    "max_wal_size = '20GB'"
    "checkpoint_timeout = '1h'"
    "autovacuum = off"
)
