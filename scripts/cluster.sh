#!/usr/bin/env bash
# A complete Airflow 3.3 deployment on this machine, from the repository's .venv:
# PostgreSQL metadata database, CeleryExecutor with Redis as broker (results in PostgreSQL),
# api-server, scheduler, dag-processor, triggerer, N shared Celery workers and one confidential
# worker (with ATTUNE_CLUSTER_SHARDS, a shard heartbeat beside each shared worker), loading the packs.
#
#   bash scripts/cluster.sh start    # start (or find running), wait until healthy, print api/user/password
#   bash scripts/cluster.sh status   # one line per process, API health; exit 0 all running, 3 otherwise
#   bash scripts/cluster.sh stop     # stop exactly what start started
#
# Settings (environment, read by a start that finds nothing running; then kept in the env file):
#   ATTUNE_CLUSTER_HOME         state: env file, AIRFLOW_HOME, logs, pid files   (<repo>/.cluster)
#   ATTUNE_CLUSTER_PORT         API server on 127.0.0.1:PORT                      (8080)
#   ATTUNE_CLUSTER_WORKERS      number of shared Celery workers worker-1..N       (2)
#   ATTUNE_CLUSTER_CONCURRENCY  task slots per worker (--concurrency)             (4)
#   ATTUNE_CLUSTER_SHARDS       optional: N shards (docs/shards.md): every process gets
#                               AIRFLOW__ATTUNE__SHARDS=N, the shared workers also listen on
#                               the shard queues, each beside a heartbeat (below)  (unset: off)
#   ATTUNE_CLUSTER_SHARD_TIMEOUT  with ATTUNE_CLUSTER_SHARDS: every process gets
#                               AIRFLOW__ATTUNE__SHARD_TIMEOUT=this, seconds      (60)
#   ATTUNE_CLUSTER_CONFIDENTIAL_ENV  optional: a file of NAME=VALUE lines exported into the
#                               confidential worker's environment only (below)    (unset)
#   ATTUNE_CLUSTER_DB           PostgreSQL database, created when missing         (attune_cluster)
#   ATTUNE_CLUSTER_REDIS_PORT / ATTUNE_CLUSTER_REDIS_DB    broker                 (6379 / 0)
#   ATTUNE_CLUSTER_PG_PORT      PostgreSQL port (trust auth, user postgres)       (5432)
#   ATTUNE_CLUSTER_LOG_PORT     triggerer log server port; worker K uses +K, the
#                               confidential worker +N+1                          (PORT+10)
#   ATTUNE_CLUSTER_API_WORKERS  API server worker processes                       (2)
#   ATTUNE_CLUSTER_TIMEOUT      seconds start waits for health and DAGs           (300)
#   ATTUNE_CLUSTER_PARSE_INTERVAL  [dag_processor] min_file_process_interval, s   (30)
#   ATTUNE_CLUSTER_DAGS_FOLDER  a DAGs folder of your own (else the repo's two DAG files)
#   ATTUNE_PACKS_PATH           ":"-separated pack folders                        (<repo>/packs)
#
#   ATTUNE_SOURCES, ATTUNE_SOURCES_DIR, ATTUNE_CACHE_DIR, AIRFLOW__ATTUNE__*, AIRFLOW__METRICS__*,
#   AIRFLOW_CONN_*              passed to every process and kept in the env file
#
# Confidential workflows (docs/confidential.md). Every process gets
# AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE (attune-confidential unless given), so the DAG processor
# compiles confidential workflows onto that queue. The Celery worker `worker-confidential`
# (celery hostname wc@%h, log log/worker-confidential.log) consumes that queue and nothing
# else; the shared workers worker-1..N never consume it. ATTUNE_CLUSTER_CONFIDENTIAL_ENV names
# a file (kept private: chmod 600) of lines NAME=VALUE, e.g.
#     AIRFLOW_VAR_ATTUNE_SECRET__MAIN__API_KEY=s3cr3t-value
# (AIRFLOW_VAR_<KEY>: Airflow's environment-variable secrets backend for the Variable <key>,
# here the declared secret API_KEY of namespace main). Blank lines and lines starting with #
# are ignored; VALUE is taken literally, to the end of the line (no quotes, no expansion).
# Those variables are exported into the confidential worker's environment (and so its
# tasks') when it is launched, never into any other process, the env file or a log; only
# the file's path is kept in the env file, and the file is read again at each launch.
# This separates environments, not users: on this one machine every process runs as the same
# Unix user, so a shared worker's task could still read that file; a real deployment runs
# its confidential workers on machines (or at least users) of their own.
# The REST API user `admin` has the password ATTUNE_CLUSTER_ADMIN_PASSWORD of $CH/secrets; the
# connection attune_airflow_api uses it (a workflow source's pause states: docs/sources.md).
# Shards (docs/shards.md). With ATTUNE_CLUSTER_SHARDS=N every process gets
# AIRFLOW__ATTUNE__SHARDS=N and AIRFLOW__ATTUNE__SHARD_TIMEOUT=${ATTUNE_CLUSTER_SHARD_TIMEOUT:-60}
# (these two win over the same variables given to `start`), so the scheduler routes each
# Attune run to the queue attune-shard-<i> of its workflow's shard. Shared worker K also
# consumes the shard queues S with S mod WORKERS == K-1 (with fewer shards than workers,
# shard (K-1) mod N), and for each such S a process `heartbeat-K-S` (log/heartbeat-K-S.log)
# runs `attune-airflow shards heartbeat --shard S --pid <worker K's pid> --worker wK-shard-S`,
# launched after worker K: while worker K runs, its shards are live. When worker K dies,
# its heartbeats end by themselves (their --pid is gone) and the shards stop being live
# shard_timeout later; `start` launches both again (the worker first; a heartbeat still
# watching the dead worker's pid is stopped and launched again too). `stop` stops the
# heartbeats like the rest (a stopped heartbeat removes its row: its shard is not live at
# once). The confidential worker never consumes a shard queue and has no heartbeat. After
# `airflow db migrate`, `start` runs `attune-airflow shards status` once, which creates the
# provider's shard tables before the processes that use them start. Without
# ATTUNE_CLUSTER_SHARDS there are no heartbeats and no shard queues.
# `source $ATTUNE_CLUSTER_HOME/env` gives a shell the cluster's settings (e.g. for `airflow dags list`,
# `attune-airflow shards status`).
# Only the three lines api/user/password of `start` go to standard output; the rest to stderr.
#
# Lost workers. A task's supervisor heartbeats to the API server every
# [workers] min_heartbeat_interval = 5 s (default). When a worker dies with its tasks:
#   [scheduler] task_instance_heartbeat_timeout = 60 (default 300): a running task instance
#       whose heartbeat is older than this is failed by the scheduler and, having retries
#       left, retried on another worker. 60 s is 12 missed heartbeats: a busy 2-core machine
#       does not lose that many, while the default made a lost task wait ~5.5 minutes.
#   [scheduler] task_instance_heartbeat_timeout_detection_interval = 10 (default): how often
#       the scheduler looks, so a lost task is failed 60 to 70 s after its last heartbeat.
#   [workers] max_failed_heartbeats = 3 (default): a supervisor that cannot reach the API
#       ends its task itself, so no task keeps running once it may have been retried.
#   [celery] task_acks_late = True (default): a message is acknowledged when its task ends,
#       so a worker killed mid-task does not silently lose the message ...
#   [celery_broker_transport_options] visibility_timeout = 86400 (Airflow's default): ...
#       but Redis hands it out again only after this long. It must stay longer than any task
#       (a shorter one re-delivers long healthy tasks to a second worker, and the scheduler
#       then fails them); recovery is the scheduler's heartbeat check above, not Celery's.
#   [scheduler] task_queued_timeout = 600 (default): a task queued on a worker that died
#       before starting it is re-queued after this long. Kept: it also bounds how long a task
#       may legitimately wait in the broker for a free slot, and its workload token lifetime.
#   [celery] worker_prefetch_multiplier = 1 (default): a worker reserves no more messages
#       than it has free slots, so a dead worker holds no unstarted tasks in the usual case.
# Measured on a 2-core machine: a worker SIGKILLed (its whole session, or its main process
# alone) 9 s into a 60 s task: the task was failed and running again on the other worker
# 65 to 69 s after the kill, and the run succeeded ~127 s after it (the default took 336 s).
set -euo pipefail

exec 3>&1 1>&2 # fd 3: the three result lines; everything else goes to stderr

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
HELPER="$REPO/scripts/cluster_helper.py"
CH="$(realpath -m -- "${ATTUNE_CLUSTER_HOME:-$REPO/.cluster}")"
RUN="$CH/run"
LOGS="$CH/log"
ENV_FILE="$CH/env"
SECRETS="$CH/secrets"
STOP_GRACE=30

die() { echo "cluster: $*"; exit 1; }
note() { echo "cluster: $*"; }
py() { "$VENV/bin/python" "$HELPER" "$@"; }

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

ensure_venv() {
  if [ ! -x "$VENV/bin/airflow" ] || [ ! -x "$VENV/bin/python" ]; then
    note "no $VENV/bin/airflow: running scripts/bootstrap.sh"
    bash "$REPO/scripts/bootstrap.sh"
  fi
}

# -- processes ----------------------------------------------------------------------------------

# /proc/PID/stat field 22: when the process started (clock ticks since boot).
proc_starttime() {
  local s
  s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  s="${s##*) }"
  # shellcheck disable=SC2086
  set -- $s
  echo "${20}"
}

pid_of() {
  local pid
  [ -f "$RUN/$1.pid" ] && read -r pid _ <"$RUN/$1.pid" && echo "$pid"
}

# alive NAME: the process recorded in run/NAME.pid still runs (same pid and start time).
alive() {
  local pid started s
  [ -f "$RUN/$1.pid" ] || return 1
  read -r pid started _ <"$RUN/$1.pid" || return 1
  s="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  s="${s##*) }"
  # shellcheck disable=SC2086
  set -- $s
  [ "$1" != Z ] && [ "$1" != X ] && [ "${20}" = "$started" ]
}

# Every process of the cluster, in launch order (worker K before its heartbeats heartbeat-K-S).
process_names() {
  local k s
  echo api-server scheduler dag-processor triggerer
  for ((k = 1; k <= ATTUNE_CLUSTER_WORKERS; k++)); do
    echo "worker-$k"
    for s in $(worker_shards "$k"); do echo "heartbeat-$k-$s"; done
  done
  echo worker-confidential
}

# The confidential worker's log server port: after the shared workers'.
confidential_log_port() { echo "$((ATTUNE_CLUSTER_LOG_PORT + ATTUNE_CLUSTER_WORKERS + 1))"; }

# The queue of confidential tasks (an env file written before the confidential worker existed
# has none: the default).
confidential_queue() { echo "${AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE:-attune-confidential}"; }

# confidential_env FILE [export]: check the NAME=VALUE lines of FILE (blank lines and # comments
# skipped; VALUE literal to the end of the line); with `export`, export them into this shell.
# Messages name the file, line number and variable, never a value.
confidential_env() {
  local file="$1" how="${2:-}" line name n=0
  [ -f "$file" ] && [ -r "$file" ] || die "ATTUNE_CLUSTER_CONFIDENTIAL_ENV: cannot read $file"
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line="${line%$'\r'}"
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    name="${line%%=*}"
    [[ "$line" == *=* && "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] ||
      die "ATTUNE_CLUSTER_CONFIDENTIAL_ENV: $file:$n: not a NAME=VALUE line"
    [ "$how" != export ] || export "$name=${line#*=}"
  done <"$file"
}

# launch [--env-file FILE] NAME COMMAND...: in a session (and process group) of its own, cwd
# the cluster home, output appended to log/NAME.log; pid file run/NAME.pid = "PID STARTTIME
# EPOCH". --env-file: FILE's NAME=VALUE lines (confidential_env) are exported into this one
# process (in the subshell that becomes it: never into this script or another process).
launch() {
  local env_file="" name pid
  if [ "$1" = --env-file ]; then
    env_file="$2"
    shift 2
  fi
  name="$1"
  shift
  echo "=== $(date -Is) cluster.sh: $*${env_file:+ (with the variables of $env_file)}" >>"$LOGS/$name.log"
  # fds 3 (our stdout) and 9 (the lock) must not stay open in the long-lived processes
  (
    cd "$CH" || exit 1
    [ -z "$env_file" ] || confidential_env "$env_file" export
    exec setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 3>&- 9>&-
  ) &
  pid=$!
  echo "$pid $(proc_starttime "$pid") $(date +%s.%N)" >"$RUN/$name.pid"
  note "started $name (pid $pid, log $LOGS/$name.log)"
}

# The shards worker K (1-based) serves, one a line (none without ATTUNE_CLUSTER_SHARDS):
# shards S with S mod WORKERS == K-1 (with fewer shards than workers, shard (K-1) mod N), so
# every shard has a worker.
worker_shards() {
  local k="$1" s
  [ -n "${ATTUNE_CLUSTER_SHARDS:-}" ] || return 0
  if ((ATTUNE_CLUSTER_SHARDS < ATTUNE_CLUSTER_WORKERS)); then
    echo "$(((k - 1) % ATTUNE_CLUSTER_SHARDS))"
  else
    for ((s = 0; s < ATTUNE_CLUSTER_SHARDS; s++)); do
      if ((s % ATTUNE_CLUSTER_WORKERS == k - 1)); then echo "$s"; fi
    done
  fi
}

# The queues worker K (1-based) consumes: default, and its shards' queues attune-shard-S.
worker_queues() {
  local queues="default" s
  for s in $(worker_shards "$1"); do queues+=",attune-shard-$s"; done
  echo "$queues"
}

# heartbeat_parts NAME: "K S" of the process heartbeat-K-S.
heartbeat_parts() {
  local rest="${1#heartbeat-}"
  echo "${rest%-*} ${rest##*-}"
}

# -- settings -------------------------------------------------------------------------------------

# The secrets are generated once and kept: every process, and every later start, shares them.
ensure_secrets() {
  if [ ! -s "$SECRETS" ]; then
    (
      umask 077
      "$VENV/bin/python" - >"$SECRETS.tmp" <<'PY'
import base64, os, secrets
print(f"ATTUNE_CLUSTER_JWT_SECRET={secrets.token_hex(32)}")
print(f"ATTUNE_CLUSTER_SECRET_KEY={secrets.token_hex(32)}")
print(f"ATTUNE_CLUSTER_FERNET_KEY={base64.urlsafe_b64encode(os.urandom(32)).decode()}")
PY
      mv "$SECRETS.tmp" "$SECRETS"
    )
  fi
  if ! grep -q '^ATTUNE_CLUSTER_ADMIN_PASSWORD=' "$SECRETS"; then # the REST API user `admin` (below)
    (umask 077 && echo "ATTUNE_CLUSTER_ADMIN_PASSWORD=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(12))')" >>"$SECRETS")
  fi
}

absolute_packs_path() {
  local out="" part
  local IFS=:
  for part in $1; do
    [ -n "$part" ] || continue
    out+="${out:+:}$(realpath -m -- "$part")"
  done
  echo "$out"
}

# Written by a start that finds no process of the cluster running; read by everything else.
write_env() {
  local port="${ATTUNE_CLUSTER_PORT:-8080}" workers="${ATTUNE_CLUSTER_WORKERS:-2}"
  local db="${ATTUNE_CLUSTER_DB:-attune_cluster}" pg_port="${ATTUNE_CLUSTER_PG_PORT:-5432}"
  local redis_port="${ATTUNE_CLUSTER_REDIS_PORT:-6379}" redis_db="${ATTUNE_CLUSTER_REDIS_DB:-0}"
  local log_port="${ATTUNE_CLUSTER_LOG_PORT:-$((port + 10))}"
  local confidential_queue="${AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE:-attune-confidential}"
  local confidential_env_file=""
  if [ -n "${ATTUNE_CLUSTER_CONFIDENTIAL_ENV:-}" ]; then
    confidential_env_file="$(realpath -m -- "$ATTUNE_CLUSTER_CONFIDENTIAL_ENV")"
    confidential_env "$confidential_env_file" # checked now: start fails before launching anything
  fi
  local packs
  packs="$(absolute_packs_path "${ATTUNE_PACKS_PATH:-$REPO/packs}")"
  local v
  for v in port workers pg_port redis_port redis_db log_port; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "ATTUNE_CLUSTER_${v^^} must be a number, not '${!v}'"
  done
  [ "$workers" -ge 1 ] || die "ATTUNE_CLUSTER_WORKERS must be at least 1"
  [[ "${ATTUNE_CLUSTER_SHARDS:-1}" =~ ^[1-9][0-9]*$ ]] || die "ATTUNE_CLUSTER_SHARDS must be a positive number"
  local shard_timeout="${ATTUNE_CLUSTER_SHARD_TIMEOUT:-60}"
  [ -z "${ATTUNE_CLUSTER_SHARDS:-}" ] || [[ "$shard_timeout" =~ ^[1-9][0-9]*$ ]] ||
    die "ATTUNE_CLUSTER_SHARD_TIMEOUT must be a positive number of seconds"
  [[ "$db" =~ ^[a-z][a-z0-9_]*$ ]] || die "ATTUNE_CLUSTER_DB must match ^[a-z][a-z0-9_]*\$"
  [[ "$confidential_queue" =~ ^[A-Za-z0-9_.-]+$ ]] && [ "$confidential_queue" != default ] &&
    [[ "$confidential_queue" != attune-shard-* ]] ||
    die "AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE must be a queue of its own (letters, digits, _.-; not default or a shard's), not '$confidential_queue'"
  # shellcheck disable=SC1090
  . "$SECRETS"
  local pg="postgres@127.0.0.1:$pg_port/$db"
  local -a settings=(
    ATTUNE_CLUSTER_HOME="$CH"
    ATTUNE_CLUSTER_PORT="$port"
    ATTUNE_CLUSTER_WORKERS="$workers"
    ATTUNE_CLUSTER_CONCURRENCY="${ATTUNE_CLUSTER_CONCURRENCY:-4}"
    ATTUNE_CLUSTER_SHARDS="${ATTUNE_CLUSTER_SHARDS:-}"
    ATTUNE_CLUSTER_DB="$db"
    ATTUNE_CLUSTER_PG_PORT="$pg_port"
    ATTUNE_CLUSTER_REDIS_PORT="$redis_port"
    ATTUNE_CLUSTER_LOG_PORT="$log_port"
    ATTUNE_CLUSTER_CONFIDENTIAL_ENV="$confidential_env_file" # the path only: its values go to worker-confidential alone
    ATTUNE_PACKS_PATH="$packs"
    AIRFLOW_HOME="$CH/airflow"
    AIRFLOW__CORE__DAGS_FOLDER="${ATTUNE_CLUSTER_DAGS_FOLDER:-$CH/dags}"
    AIRFLOW__CORE__LOAD_EXAMPLES=False
    AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
    AIRFLOW__CORE__EXECUTOR=CeleryExecutor
    AIRFLOW__CORE__FERNET_KEY="$ATTUNE_CLUSTER_FERNET_KEY"
    AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$CH/simple_auth_manager_passwords.json.generated"
    AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$port/execution/"
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://$pg"
    AIRFLOW__API__HOST=127.0.0.1
    AIRFLOW__API__PORT="$port"
    AIRFLOW__API__BASE_URL="http://127.0.0.1:$port"
    AIRFLOW__API__WORKERS="${ATTUNE_CLUSTER_API_WORKERS:-2}"
    AIRFLOW__API__SECRET_KEY="$ATTUNE_CLUSTER_SECRET_KEY"
    AIRFLOW__API_AUTH__JWT_SECRET="$ATTUNE_CLUSTER_JWT_SECRET"
    AIRFLOW__CELERY__BROKER_URL="redis://127.0.0.1:$redis_port/$redis_db"
    AIRFLOW__CELERY__RESULT_BACKEND="db+postgresql://$pg"
    AIRFLOW__CELERY__WORKER_CONCURRENCY="${ATTUNE_CLUSTER_CONCURRENCY:-4}"
    AIRFLOW__CELERY__TASK_ACKS_LATE=True
    AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER=1
    AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT=86400
    AIRFLOW__OPERATORS__DEFAULT_QUEUE=default
    AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=60
    AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL=10
    AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT=600
    AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL=5
    AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS=3
    AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=False
    AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="${ATTUNE_CLUSTER_PARSE_INTERVAL:-30}"
    AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="$log_port"
    AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="$((log_port + 1))" # worker K: log_port + K
    AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE="$confidential_queue" # confidential workflows' tasks: worker-confidential
    # the REST API as user admin: how a workflow source's pause states reach existing DAGs (docs/sources.md)
    AIRFLOW_CONN_ATTUNE_AIRFLOW_API="{\"conn_type\": \"http\", \"host\": \"http://127.0.0.1\", \"port\": $port, \"login\": \"admin\", \"password\": \"$ATTUNE_CLUSTER_ADMIN_PASSWORD\"}"
  )
  if [ -n "${ATTUNE_CLUSTER_SHARDS:-}" ]; then # shards: every process routes (scheduler) and agrees
    settings+=(
      ATTUNE_CLUSTER_SHARD_TIMEOUT="$shard_timeout"
      AIRFLOW__ATTUNE__SHARDS="$ATTUNE_CLUSTER_SHARDS"
      AIRFLOW__ATTUNE__SHARD_TIMEOUT="$shard_timeout"
    )
  fi
  # Attune's and Airflow's own settings given to `start` are kept for every process (workflow sources, metrics...)
  local name
  for name in $(compgen -e); do
    case "$name" in
      ATTUNE_SOURCES | ATTUNE_SOURCES_DIR | ATTUNE_CACHE_DIR | AIRFLOW__ATTUNE__* | AIRFLOW__METRICS__* | AIRFLOW_CONN_*)
        [ "$name" = AIRFLOW_CONN_ATTUNE_AIRFLOW_API ] || [ "$name" = AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE ] ||
          { [ -n "${ATTUNE_CLUSTER_SHARDS:-}" ] &&
            { [ "$name" = AIRFLOW__ATTUNE__SHARDS ] || [ "$name" = AIRFLOW__ATTUNE__SHARD_TIMEOUT ]; }; } ||
          settings+=("$name=${!name}")
        ;;
    esac
  done
  local passwords="$CH/simple_auth_manager_passwords.json.generated"
  if [ ! -s "$passwords" ]; then
    (umask 077 && printf '{"admin": "%s"}\n' "$ATTUNE_CLUSTER_ADMIN_PASSWORD" >"$passwords")
  fi
  (
    umask 077
    {
      echo "# Written by scripts/cluster.sh start on $(date -Is); read by status/stop; source it to use this cluster."
      local kv
      for kv in "${settings[@]}"; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"; done
      printf 'export PATH=%q:"$PATH"\n' "$VENV/bin"
    } >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
  )
}

load_env() {
  [ -f "$ENV_FILE" ] || return 1
  # shellcheck disable=SC1090
  . "$ENV_FILE"
}

# -- PostgreSQL and Redis ----------------------------------------------------------------------------

pg_up() {
  if command -v pg_isready >/dev/null; then
    pg_isready -q -h 127.0.0.1 -p "$ATTUNE_CLUSTER_PG_PORT" -t 3
  else
    py port-open 127.0.0.1 "$ATTUNE_CLUSTER_PG_PORT"
  fi
}

redis_up() {
  if command -v redis-cli >/dev/null; then
    [ "$(redis-cli -h 127.0.0.1 -p "$ATTUNE_CLUSTER_REDIS_PORT" ping 2>/dev/null)" = PONG ]
  else
    py port-open 127.0.0.1 "$ATTUNE_CLUSTER_REDIS_PORT"
  fi
}

wait_for() { # wait_for NAME CHECK SECONDS
  local i
  for ((i = 0; i < $3 * 2; i++)); do
    if "$2"; then return 0; fi
    sleep 0.5
  done
  return 1
}

ensure_postgres() {
  pg_up && return 0
  local version
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$version" ]; then
    die "PostgreSQL is not reachable on 127.0.0.1:$ATTUNE_CLUSTER_PG_PORT and not installed: apt-get install postgresql redis-server"
  fi
  note "PostgreSQL not reachable: starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 3>&- 9>&- ||
    die "could not start PostgreSQL $version/main (pg_ctlcluster --skip-systemctl-redirect $version main start)"
  echo "$version main" >"$RUN/postgresql.started" # stop stops only what start started
  wait_for postgresql pg_up 60 || die "PostgreSQL $version/main started but 127.0.0.1:$ATTUNE_CLUSTER_PG_PORT does not answer"
}

ensure_redis() {
  redis_up && return 0
  command -v redis-server >/dev/null ||
    die "Redis is not reachable on 127.0.0.1:$ATTUNE_CLUSTER_REDIS_PORT and not installed: apt-get install postgresql redis-server"
  local dir=/var/lib/redis
  [ -d "$dir" ] && [ -w "$dir" ] || {
    dir="$CH/redis"
    mkdir -p "$dir"
  }
  note "Redis not reachable: starting redis-server on 127.0.0.1:$ATTUNE_CLUSTER_REDIS_PORT (log $LOGS/redis.log)"
  rm -f "$RUN/redis.pid"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$ATTUNE_CLUSTER_REDIS_PORT" --save "" \
    --appendonly no --dir "$dir" --logfile "$LOGS/redis.log" --pidfile "$RUN/redis.pid" 3>&- 9>&- ||
    die "could not start redis-server (see $LOGS/redis.log)"
  wait_for redis redis_up 30 || die "redis-server started but does not answer (see $LOGS/redis.log)"
  local pid
  read -r pid <"$RUN/redis.pid"
  echo "$pid $(proc_starttime "$pid")" >"$RUN/redis.started" # stop stops only what start started
}

stop_services() {
  if [ -f "$RUN/redis.started" ]; then
    local pid started
    read -r pid started <"$RUN/redis.started"
    if [ "$(proc_starttime "$pid" || true)" = "$started" ]; then
      note "stopping the redis-server this script started (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < STOP_GRACE * 2; i++)); do
        [ "$(proc_starttime "$pid" || true)" = "$started" ] || break
        sleep 0.5
      done
      [ "$(proc_starttime "$pid" || true)" != "$started" ] || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/redis.started" "$RUN/redis.pid"
  fi
  if [ -f "$RUN/postgresql.started" ]; then
    local version cluster
    read -r version cluster <"$RUN/postgresql.started"
    note "stopping the PostgreSQL cluster this script started ($version/$cluster)"
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" stop || note "pg_ctlcluster stop failed"
    rm -f "$RUN/postgresql.started"
  fi
}

# -- commands --------------------------------------------------------------------------------------

cmd_start() {
  local begin=$SECONDS timeout="${ATTUNE_CLUSTER_TIMEOUT:-300}"
  [[ "$timeout" =~ ^[0-9]+$ ]] || die "ATTUNE_CLUSTER_TIMEOUT must be a number of seconds"
  ensure_venv
  local any_alive=0 name f
  shopt -s nullglob
  for f in "$RUN"/*.pid; do
    name="$(basename "$f" .pid)"
    if [ "$name" != redis ] && alive "$name"; then any_alive=1; fi
  done
  shopt -u nullglob
  if ((any_alive)) && [ -f "$ENV_FILE" ]; then
    note "cluster in $CH is running: using its settings from $ENV_FILE (stop it to change them)"
  else
    ensure_secrets
    write_env
  fi
  load_env
  ensure_postgres
  ensure_redis

  # Leftovers of processes that died (their sessions), then launch what is not running.
  local -a dead=() ports=()
  local k s
  for name in $(process_names); do
    if ! alive "$name" || { [[ "$name" == heartbeat-* ]] &&
      read -r k s <<<"$(heartbeat_parts "$name")" && [[ " ${dead[*]} " == *" worker-$k "* ]]; }; then
      # a heartbeat of a worker launched again watches the old pid: it goes (and comes back) too
      dead+=("$name")
      [ ! -f "$RUN/$name.pid" ] || py reap --grace 5 "$RUN/$name.pid" || true
      rm -f "$RUN/$name.pid"
    fi
  done
  if ((${#dead[@]})); then
    for name in "${dead[@]}"; do
      case "$name" in
        api-server) ports+=("$ATTUNE_CLUSTER_PORT") ;;
        triggerer) ports+=("$ATTUNE_CLUSTER_LOG_PORT") ;;
        worker-confidential) ports+=("$(confidential_log_port)") ;;
        worker-*) ports+=("$((ATTUNE_CLUSTER_LOG_PORT + ${name#worker-}))") ;;
      esac
    done
    ((${#ports[@]} == 0)) || py ports-free "${ports[@]}" || die "stop what uses them, or choose other ports (ATTUNE_CLUSTER_PORT, ATTUNE_CLUSTER_LOG_PORT)"

    py createdb "$ATTUNE_CLUSTER_DB" || die "could not create database $ATTUNE_CLUSTER_DB"
    note "airflow db migrate (log $LOGS/migrate.log)"
    if ! (cd "$CH" && timeout "$timeout" "$VENV/bin/airflow" db migrate >>"$LOGS/migrate.log" 2>&1); then
      tail -n 40 "$LOGS/migrate.log"
      die "airflow db migrate failed (log $LOGS/migrate.log)"
    fi
    if [ -n "${ATTUNE_CLUSTER_SHARDS:-}" ]; then
      # The provider creates its shard tables on first use; done here once, before the
      # heartbeats, scheduler and API server start: processes creating them at the same
      # moment on a new database collide (CREATE TABLE: duplicate key in pg_type).
      note "attune-airflow shards status: the shard tables (log $LOGS/migrate.log)"
      if ! (cd "$CH" && timeout "$timeout" attune-airflow shards status >>"$LOGS/migrate.log" 2>&1); then
        tail -n 40 "$LOGS/migrate.log"
        die "attune-airflow shards status failed (log $LOGS/migrate.log)"
      fi
    fi
    if [ -z "${ATTUNE_CLUSTER_DAGS_FOLDER:-}" ]; then # else the caller's own DAGs folder
      mkdir -p "$CH/dags"
      local f
      for f in attune_dags.py attune_errors.py; do
        cmp -s "$REPO/dags/$f" "$CH/dags/$f" || cp "$REPO/dags/$f" "$CH/dags/$f"
      done
    fi
    for name in "${dead[@]}"; do
      case "$name" in
        api-server) launch "$name" airflow api-server --host 127.0.0.1 --port "$ATTUNE_CLUSTER_PORT" ;;
        scheduler | dag-processor | triggerer) launch "$name" airflow "$name" ;;
        worker-confidential) # its queue only; the secrets of ATTUNE_CLUSTER_CONFIDENTIAL_ENV
          launch ${ATTUNE_CLUSTER_CONFIDENTIAL_ENV:+--env-file "$ATTUNE_CLUSTER_CONFIDENTIAL_ENV"} \
            "$name" env AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="$(confidential_log_port)" \
            airflow celery worker --concurrency "$ATTUNE_CLUSTER_CONCURRENCY" \
            --celery-hostname "wc@%h" --queues "$(confidential_queue)"
          ;;
        worker-*)
          k="${name#worker-}"
          launch "$name" env AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="$((ATTUNE_CLUSTER_LOG_PORT + k))" \
            airflow celery worker --concurrency "$ATTUNE_CLUSTER_CONCURRENCY" \
            --celery-hostname "w$k@%h" --queues "$(worker_queues "$k")"
          ;;
        heartbeat-*) # after its worker (process_names' order): it stops when that pid is gone
          read -r k s <<<"$(heartbeat_parts "$name")"
          launch "$name" attune-airflow shards heartbeat --shard "$s" --pid "$(pid_of "worker-$k")" \
            --worker "w$k-shard-$s"
          ;;
      esac
    done
  fi

  local left=$((timeout - (SECONDS - begin)))
  ((left > 10)) || left=10
  note "waiting up to ${left}s for the API and the packs' DAGs"
  py wait "$left" || exit 1
  local password
  password="$("$VENV/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' \
    "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")"
  note "ready after $((SECONDS - begin))s (settings: source $ENV_FILE)"
  printf 'api: http://127.0.0.1:%s\nuser: admin\npassword: %s\n' "$ATTUNE_CLUSTER_PORT" "$password" >&3
}

cmd_stop() {
  if ! load_env; then
    note "no cluster in $CH (no $ENV_FILE)"
  fi
  shopt -s nullglob
  local -a pidfiles=("$RUN"/*.pid)
  local -a ours=()
  local f
  for f in "${pidfiles[@]}"; do [ "$(basename "$f")" = redis.pid ] || ours+=("$f"); done
  if ((${#ours[@]})); then
    note "stopping ${#ours[@]} process(es): $(basename -s .pid "${ours[@]}" | tr '\n' ' ')"
    py reap --grace "$STOP_GRACE" "${ours[@]}" || die "some processes did not stop"
  else
    note "no Airflow process of this cluster is running"
  fi
  stop_services
  note "stopped"
}

cmd_status() {
  load_env || {
    echo "no cluster in $CH (no $ENV_FILE)" >&3
    exit 3
  }
  local all=0 name pid state k s
  for name in $(process_names); do
    pid="$(pid_of "$name" || true)"
    if alive "$name"; then state=running; else
      state=dead
      all=3
    fi
    case "$name" in
      worker-confidential) printf '%-20s %-8s %s\n' "$name" "${pid:--}" "$state (queue $(confidential_queue) only)" >&3 ;;
      heartbeat-*)
        read -r k s <<<"$(heartbeat_parts "$name")"
        printf '%-20s %-8s %s\n' "$name" "${pid:--}" "$state (shard $s of worker-$k)" >&3
        ;;
      *) printf '%-20s %-8s %s\n' "$name" "${pid:--}" "$state" >&3 ;;
    esac
  done
  local health
  health="$(py health 2>/dev/null)" || true
  printf '%-20s %-8s %s\n' api "$ATTUNE_CLUSTER_PORT" "${health:-not answering} (http://127.0.0.1:$ATTUNE_CLUSTER_PORT)" >&3
  local who
  who=external
  [ ! -f "$RUN/postgresql.started" ] || who="started by cluster.sh"
  if pg_up; then state=reachable; else state="NOT reachable"; fi
  printf '%-20s %-8s %s\n' postgresql "$ATTUNE_CLUSTER_PG_PORT" "$state ($who, database $ATTUNE_CLUSTER_DB)" >&3
  who=external
  [ ! -f "$RUN/redis.started" ] || who="started by cluster.sh"
  if redis_up; then state=reachable; else state="NOT reachable"; fi
  printf '%-20s %-8s %s\n' redis "$ATTUNE_CLUSTER_REDIS_PORT" "$state ($who)" >&3
  exit "$all"
}

[ $# -eq 1 ] || usage
case "$1" in
  start | stop)
    if [ "$1" = stop ] && [ ! -d "$RUN" ]; then
      note "no cluster in $CH"
      exit 0
    fi
    mkdir -p "$RUN" "$LOGS"
    [ -f "$CH/.gitignore" ] || echo '*' >"$CH/.gitignore" # keeps the default <repo>/.cluster out of git
    exec 9>"$RUN/lock"
    flock -w 600 9 || die "another cluster.sh start/stop holds $RUN/lock"
    "cmd_$1"
    ;;
  status) cmd_status ;;
  *) usage ;;
esac
