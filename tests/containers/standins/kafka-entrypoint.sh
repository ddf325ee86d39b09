#!/bin/sh
# kafka-entrypoint.sh — apache/kafka's interface on the tansu stand-in (gitlab-kafka.Containerfile):
# listens on every interface at the port of the PLAINTEXT listener of KAFKA_ADVERTISED_LISTENERS
# and advertises that listener. The other KAFKA_* settings (KRaft roles, replication factors)
# have no counterpart in a single tansu broker.
set -eu
advertised="${KAFKA_ADVERTISED_LISTENERS:-PLAINTEXT://localhost:9092}"
case "$advertised" in
  *PLAINTEXT://*) ;;
  *) echo "kafka-entrypoint.sh: no PLAINTEXT listener in KAFKA_ADVERTISED_LISTENERS=$advertised" >&2; exit 64 ;;
esac
advertised="${advertised#*PLAINTEXT://}"
advertised="${advertised%%,*}"
port="${advertised##*:}"
exec tansu broker --listener-url "tcp://0.0.0.0:$port" \
  --advertised-listener-url "tcp://$advertised" --storage-engine memory://tansu/
