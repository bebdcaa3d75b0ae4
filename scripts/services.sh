#!/usr/bin/env bash
# Starts and stops the local Apache Kafka (KRaft, single node) and Redis that Tidemail's
# demo and tests run against. Everything lives under .cache/ (git-ignored); `up` is
# idempotent and `down` stops only the processes whose pid files `up` wrote.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
KAFKA_HOME="$CACHE/kafka"
KAFKA_PORT="${TIDEMAIL_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${TIDEMAIL_KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${TIDEMAIL_REDIS_PORT:-6379}"
RUN="$CACHE/run"
LOGS="$CACHE/logs"

log() { printf '[services] %s\n' "$*" >&2; }

is_running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

redis_answers() {
  local reply=""
  exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" || return 1
  printf 'PING\r\n' >&3
  read -r -t 2 reply <&3 || true
  exec 3>&-
  [[ "$reply" == +PONG* ]]
}

ensure_kafka_jars() {
  if [ -f "$KAFKA_HOME/libs/.complete" ]; then return; fi
  command -v mvn >/dev/null || { log "Maven (mvn) is required to fetch Kafka"; exit 1; }
  log "resolving Apache Kafka jars from Maven Central (first run only)"
  mkdir -p "$KAFKA_HOME/libs"
  mvn -q -B -f "$ROOT/docker/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_HOME/libs" -DincludeScope=runtime
  touch "$KAFKA_HOME/libs/.complete"
}

write_kafka_config() {
  mkdir -p "$KAFKA_HOME/config" "$KAFKA_HOME/data"
  cat >"$KAFKA_HOME/config/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=${KAFKA_HOME}/data
num.partitions=8
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=1048588
log.retention.hours=168
PROPS
  cat >"$KAFKA_HOME/config/log4j2.properties" <<PROPS
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=${LOGS}/kafka.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=INFO
PROPS
}

kafka_java() {
  java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2.properties" \
    -cp "$KAFKA_HOME/libs/*" "$@"
}

start_kafka() {
  # Also when a broker is already there: `make chaos` and its test start brokers of their own from these jars.
  ensure_kafka_jars
  if is_running "$RUN/kafka.pid"; then log "kafka already running on :$KAFKA_PORT"; return; fi
  if port_open "$KAFKA_PORT"; then
    # Another checkout's broker (or the user's own) is fine if it answers as Kafka;
    # wait_for_kafka_metadata below fails loudly if it does not.
    log "using the Kafka-like service already listening on :$KAFKA_PORT (not started here, not stopped by down)"
    return
  fi
  write_kafka_config
  if [ ! -f "$KAFKA_HOME/data/meta.properties" ]; then
    log "formatting KRaft storage"
    kafka_java kafka.tools.StorageTool format --ignore-formatted \
      --cluster-id "$(kafka_java kafka.tools.StorageTool random-uuid)" \
      --config "$KAFKA_HOME/config/server.properties" >>"$LOGS/kafka-format.log" 2>&1
  fi
  log "starting kafka on :$KAFKA_PORT (log: .cache/logs/kafka.log)"
  setsid java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_HOME/config/log4j2.properties" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$KAFKA_HOME/config/server.properties" \
    >>"$LOGS/kafka.out" 2>&1 </dev/null &
  echo $! >"$RUN/kafka.pid"
}

ensure_redis_server() {
  if command -v redis-server >/dev/null; then return; fi
  log "installing redis-server from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq redis-server >/dev/null
}

start_redis() {
  # Also when a Redis is already there: the chaos run starts and kills one of its own.
  ensure_redis_server
  if is_running "$RUN/redis.pid"; then log "redis already running on :$REDIS_PORT"; return; fi
  if port_open "$REDIS_PORT"; then
    if redis_answers; then
      log "using the redis already listening on :$REDIS_PORT (not started here, not stopped by down)"
      return
    fi
    log "port $REDIS_PORT is taken by something that is not redis"
    exit 1
  fi
  mkdir -p "$CACHE/redis"
  log "starting redis on :$REDIS_PORT"
  # Delivery claims are kept in an append-only file synced every second: a killed Redis
  # comes back with them (the deliveries topic is the durable record either way).
  setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$CACHE/redis" \
    --save '' --appendonly yes --appendfsync everysec --daemonize no --logfile "$LOGS/redis.log" \
    </dev/null >/dev/null 2>&1 &
  echo $! >"$RUN/redis.pid"
}

wait_for() {
  local name=$1 port=$2 deadline=$((SECONDS + 120))
  until port_open "$port"; do
    if [ $SECONDS -ge $deadline ]; then log "$name did not open :$port in 120s; see .cache/logs"; exit 1; fi
    sleep 0.5
  done
}

wait_for_kafka_metadata() {
  # The port opens before the controller has elected itself, and after a restart the
  # broker loads partitions for a while: ready means every partition has a leader.
  "$ROOT/.venv/bin/python" - "$KAFKA_PORT" <<'PY'
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient

async def all_partitions_led(admin: AIOKafkaAdminClient) -> bool:
    topics = await admin.list_topics()
    if not topics:
        return True
    for described in await admin.describe_topics(topics):
        if described.get("error_code") or any(p["leader"] < 0 for p in described["partitions"]):
            return False
    return True

async def main(port: str) -> None:
    for _ in range(360):
        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
        try:
            await admin.start()
            if await all_partitions_led(admin):
                return
        except Exception:
            pass
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    sys.exit("kafka did not have a leader for every partition within 180s")

asyncio.run(main(sys.argv[1]))
PY
}

stop_one() {
  local name=$1 pidfile="$RUN/$1.pid"
  if is_running "$pidfile"; then
    local pid; pid=$(cat "$pidfile")
    log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  up)
    mkdir -p "$RUN" "$LOGS"
    start_redis
    start_kafka
    wait_for redis "$REDIS_PORT"
    wait_for kafka "$KAFKA_PORT"
    wait_for_kafka_metadata
    log "ready: kafka 127.0.0.1:$KAFKA_PORT, redis 127.0.0.1:$REDIS_PORT"
    ;;
  down)
    stop_one kafka
    stop_one redis
    ;;
  listening)
    # Whether something answers on the service's port (ours, or one started elsewhere).
    case "${2:-}" in
      kafka) port_open "$KAFKA_PORT" ;;
      redis) port_open "$REDIS_PORT" ;;
      *) echo "usage: $0 listening kafka|redis" >&2; exit 2 ;;
    esac
    ;;
  stop)
    shift
    for name in "$@"; do stop_one "$name"; done
    ;;
  reset)
    "$0" down
    # Worker state mirrors the broker's changelogs: it goes with them.
    rm -rf "$KAFKA_HOME/data" "$CACHE/redis" "$CACHE/worker"
    ;;
  *)
    echo "usage: $0 up|down|reset|listening NAME|stop NAME..." >&2
    exit 2
    ;;
esac
