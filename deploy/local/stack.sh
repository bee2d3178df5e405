#!/usr/bin/env bash
# The local stack: a real single-node Apache Kafka broker (KRaft) from Maven Central jars, Debian's
# redis-server and an MLflow tracking server (SQLite backend, artifacts served over HTTP from a folder under
# the stack dir; the venv's `mlflow`). Usage: deploy/local/stack.sh {start|stop|status|restart|reset|jars}
# Ports and folders come from the environment (defaults below, the same as mesh.config's defaults).
# Every process is started by this script, recorded in a pid file, and stopped by that pid only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KAFKA_PORT="${MESH_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${MESH_KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${MESH_REDIS_PORT:-16379}"
MLFLOW_PORT="${MESH_MLFLOW_PORT:-15000}"
MLFLOW_BIN="${MESH_MLFLOW_BIN:-$ROOT/.venv/bin/mlflow}"
STACK_DIR="${MESH_STACK_DIR:-$ROOT/.cache/stack}"
KAFKA_LIBS="${MESH_KAFKA_LIBS:-$ROOT/.cache/kafka/libs}"
KAFKA_HEAP="${MESH_KAFKA_HEAP:--Xms256m -Xmx768m}"
LOG_DIR="$STACK_DIR/logs"
PID_DIR="$STACK_DIR/pids"
WAIT_S="${MESH_STACK_WAIT_S:-60}"
MLFLOW_WAIT_S="${MESH_MLFLOW_WAIT_S:-240}"  # the server imports a lot: slow on a loaded machine
# Which parts this stack runs, in start order (a test's private broker needs only kafka).
read -r -a COMPONENTS <<< "${MESH_STACK_COMPONENTS:-redis kafka mlflow}"

say() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

jars() {
  command -v java >/dev/null || die "java not found: install a Java 17 runtime (apt-get install openjdk-17-jre-headless)"
  local stamp="$KAFKA_LIBS/.pom.sha"
  local want; want="$(sha256sum "$ROOT/deploy/local/pom.xml" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found: Maven is needed once to fetch the Kafka jars (apt-get install maven)"
  say "resolving the Kafka broker jars from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"; mkdir -p "$KAFKA_LIBS"
  if ! mvn -q -B -f "$ROOT/deploy/local/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime >"$STACK_DIR/mvn.log" 2>&1; then
    tail -20 "$STACK_DIR/mvn.log" >&2
    die "could not resolve the Kafka jars from Maven Central (see $STACK_DIR/mvn.log); is the registry reachable?"
  fi
  echo "$want" > "$stamp"
}

redis_bin() {
  if ! command -v redis-server >/dev/null; then
    say "installing Debian's redis-server"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
      || die "redis-server is missing and could not be installed with apt-get"
  fi
}

kafka_props() {
  cat > "$STACK_DIR/kafka/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$STACK_DIR/kafka/data
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=24
log.segment.bytes=67108864
PROPS
  cat > "$STACK_DIR/kafka/log4j2.yaml" <<'LOG'
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.log
        level: WARN
      - name: org.apache.kafka.storage
        level: WARN
LOG
}

start_kafka() {
  local pidf="$PID_DIR/kafka.pid"
  if pid_alive "$pidf"; then say "kafka already running (pid $(cat "$pidf")) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by a process this script did not start; set MESH_KAFKA_PORT"
  jars
  mkdir -p "$STACK_DIR/kafka"
  kafka_props
  if [ ! -f "$STACK_DIR/kafka/data/meta.properties" ]; then
    local cid; cid="$(python3 -c 'import uuid,base64;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
    java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format --standalone -t "$cid" \
      -c "$STACK_DIR/kafka/server.properties" >"$LOG_DIR/kafka-format.log" 2>&1 \
      || { cat "$LOG_DIR/kafka-format.log" >&2; die "formatting the KRaft storage failed"; }
  fi
  # shellcheck disable=SC2086
  nohup java $KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STACK_DIR/kafka/log4j2.yaml" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$STACK_DIR/kafka/server.properties" \
    >"$LOG_DIR/kafka.log" 2>&1 < /dev/null &
  echo $! > "$pidf"
  local i
  for ((i = 0; i < WAIT_S * 4; i++)); do
    if ! pid_alive "$pidf"; then tail -30 "$LOG_DIR/kafka.log" >&2; rm -f "$pidf"; die "kafka exited during start-up (log: $LOG_DIR/kafka.log)"; fi
    if port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$LOG_DIR/kafka.log"; then
      say "kafka up on 127.0.0.1:$KAFKA_PORT (pid $(cat "$pidf"), log $LOG_DIR/kafka.log)"; return 0
    fi
    sleep 0.25
  done
  stop_pid kafka; die "kafka did not become healthy within ${WAIT_S}s (log: $LOG_DIR/kafka.log)"
}

start_redis() {
  local pidf="$PID_DIR/redis.pid"
  if pid_alive "$pidf"; then say "redis already running (pid $(cat "$pidf")) on 127.0.0.1:$REDIS_PORT"; return 0; fi
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by a process this script did not start; set MESH_REDIS_PORT"
  redis_bin
  mkdir -p "$STACK_DIR/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --pidfile "$pidf" \
    --logfile "$LOG_DIR/redis.log" --dir "$STACK_DIR/redis" --save "" \
    --appendonly yes --appendfsync everysec >/dev/null  # AOF: state survives a restart (at most ~1 s lost)
  local i
  for ((i = 0; i < WAIT_S * 4; i++)); do
    if [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; then
      say "redis up on 127.0.0.1:$REDIS_PORT (pid $(cat "$pidf"), log $LOG_DIR/redis.log)"; return 0
    fi
    sleep 0.25
  done
  die "redis did not answer PING within ${WAIT_S}s (log: $LOG_DIR/redis.log)"
}

mlflow_healthy() {
  "$ROOT/.venv/bin/python" - "$MLFLOW_PORT" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

start_mlflow() {
  # A tracking + registry server: clients use MLFLOW_TRACKING_URI / MESH_MODELS__TRACKING_URI =
  # http://127.0.0.1:$MLFLOW_PORT. Artifacts are proxied by the server (mlflow-artifacts:/), so a client
  # never reads the server's folder. The test suite keeps its own temp file registries; this one is for the
  # demo, the integration test of the server path and anything run against the local stack.
  local pidf="$PID_DIR/mlflow.pid"
  if pid_alive "$pidf"; then say "mlflow already running (pid $(cat "$pidf")) on http://127.0.0.1:$MLFLOW_PORT"; return 0; fi
  port_open "$MLFLOW_PORT" && die "port $MLFLOW_PORT is taken by a process this script did not start; set MESH_MLFLOW_PORT"
  [ -x "$MLFLOW_BIN" ] || die "mlflow not found at $MLFLOW_BIN: run scripts/setup.sh (or set MESH_MLFLOW_BIN)"
  mkdir -p "$STACK_DIR/mlflow/artifacts"
  # setsid: the server and its uvicorn worker form one process group, stopped together by stop_group.
  MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid nohup "$MLFLOW_BIN" server \
    --backend-store-uri "sqlite:///$STACK_DIR/mlflow/mlflow.db" \
    --serve-artifacts --artifacts-destination "$STACK_DIR/mlflow/artifacts" \
    --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
    >"$LOG_DIR/mlflow.log" 2>&1 < /dev/null &
  echo $! > "$pidf"
  local i
  for ((i = 0; i < MLFLOW_WAIT_S * 4; i++)); do
    if ! pid_alive "$pidf"; then tail -30 "$LOG_DIR/mlflow.log" >&2; rm -f "$pidf"; die "mlflow exited during start-up (log: $LOG_DIR/mlflow.log)"; fi
    if port_open "$MLFLOW_PORT" && mlflow_healthy; then
      say "mlflow up on http://127.0.0.1:$MLFLOW_PORT (pid $(cat "$pidf"), log $LOG_DIR/mlflow.log)"; return 0
    fi
    sleep 0.25
  done
  stop_pid mlflow; die "mlflow did not answer /health within ${MLFLOW_WAIT_S}s (MESH_MLFLOW_WAIT_S) (log: $LOG_DIR/mlflow.log)"
}

stop_pid() {
  local name="$1" pidf="$PID_DIR/$1.pid" pid i
  if ! pid_alive "$pidf"; then rm -f "$pidf"; say "$name not running"; return 0; fi
  pid="$(cat "$pidf")"
  # mlflow was started as its own process group (setsid): signal the group so its worker goes too.
  local target="$pid"; [ "$name" = mlflow ] && target="-$pid"
  kill -TERM -- "$target" 2>/dev/null || true
  for ((i = 0; i < 120; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then say "$name (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"; kill -KILL -- "$target" 2>/dev/null || true; fi
  [ "$name" = mlflow ] && kill -KILL -- "$target" 2>/dev/null || true  # a worker that outlived its parent
  rm -f "$pidf"; say "$name stopped"
}

status() {
  local rc=0 n
  for n in "${COMPONENTS[@]}"; do
    if pid_alive "$PID_DIR/$n.pid"; then say "$n running (pid $(cat "$PID_DIR/$n.pid"))"; else say "$n stopped"; rc=1; fi
  done
  return $rc
}

stop_all() {  # every part this script may have started, whatever COMPONENTS says now
  stop_pid mlflow; stop_pid kafka; stop_pid redis
}

mkdir -p "$LOG_DIR" "$PID_DIR"
case "${1:-}" in
  start) for n in "${COMPONENTS[@]}"; do "start_$n"; done ;;
  stop) stop_all ;;
  restart) stop_all; for n in "${COMPONENTS[@]}"; do "start_$n"; done ;;
  status) status ;;
  reset) stop_pid mlflow; stop_pid kafka; stop_pid redis
    rm -rf "$STACK_DIR/kafka" "$STACK_DIR/redis" "$STACK_DIR/mlflow"; say "data wiped" ;;
  jars) jars ;;
  *) echo "usage: $0 {start|stop|status|restart|reset|jars}" >&2; exit 2 ;;
esac
