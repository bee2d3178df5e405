#!/usr/bin/env bash
# The local stack: a real single-node Apache Kafka broker (KRaft) from Maven Central jars and Debian's
# redis-server. Usage: deploy/local/stack.sh {start|stop|status|restart|reset|jars}
# Ports and folders come from the environment (defaults below, the same as mesh.config's defaults).
# Every process is started by this script, recorded in a pid file, and stopped by that pid only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KAFKA_PORT="${MESH_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${MESH_KAFKA_CONTROLLER_PORT:-19093}"
REDIS_PORT="${MESH_REDIS_PORT:-16379}"
STACK_DIR="${MESH_STACK_DIR:-$ROOT/.cache/stack}"
KAFKA_LIBS="${MESH_KAFKA_LIBS:-$ROOT/.cache/kafka/libs}"
KAFKA_HEAP="${MESH_KAFKA_HEAP:--Xms256m -Xmx768m}"
LOG_DIR="$STACK_DIR/logs"
PID_DIR="$STACK_DIR/pids"
WAIT_S="${MESH_STACK_WAIT_S:-60}"

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

stop_pid() {
  local name="$1" pidf="$PID_DIR/$1.pid" pid i
  if ! pid_alive "$pidf"; then rm -f "$pidf"; say "$name not running"; return 0; fi
  pid="$(cat "$pidf")"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 120; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then say "$name (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidf"; say "$name stopped"
}

status() {
  local rc=0 n
  for n in kafka redis; do
    if pid_alive "$PID_DIR/$n.pid"; then say "$n running (pid $(cat "$PID_DIR/$n.pid"))"; else say "$n stopped"; rc=1; fi
  done
  return $rc
}

mkdir -p "$LOG_DIR" "$PID_DIR"
case "${1:-}" in
  start) start_redis; start_kafka ;;
  stop) stop_pid kafka; stop_pid redis ;;
  restart) stop_pid kafka; stop_pid redis; start_redis; start_kafka ;;
  status) status ;;
  reset) stop_pid kafka; stop_pid redis; rm -rf "$STACK_DIR/kafka" "$STACK_DIR/redis"; say "data wiped" ;;
  jars) jars ;;
  *) echo "usage: $0 {start|stop|status|restart|reset|jars}" >&2; exit 2 ;;
esac
