# Sourced by scripts/run and scripts/test: makes sure a RabbitMQ answers on 127.0.0.1:5672.
# Starts the local server when it is installed but down; installs Debian's rabbitmq-server when absent (as root).
rabbitmq_answers() {
    python3 - <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

ensure_rabbitmq() {
    if rabbitmq_answers; then return 0; fi
    if ! command -v rabbitmq-server >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "setup: installing Debian's rabbitmq-server" >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >&2
        else
            echo "setup: no RabbitMQ on 127.0.0.1:5672 and none installed; install it with:" >&2
            echo "       sudo apt-get install rabbitmq-server   (then run this command again)" >&2
            return 1
        fi
    fi
    if ! rabbitmq_answers; then
        echo "setup: starting RabbitMQ (rabbitmq-server -detached)" >&2
        rabbitmq-server -detached >&2 || true
    fi
    for _ in $(seq 1 90); do
        if rabbitmq_answers; then return 0; fi
        sleep 1
    done
    echo "setup: RabbitMQ did not start within 90 s; see /var/log/rabbitmq/" >&2
    return 1
}
