#!/usr/bin/env bash
# Makes sure a Redis answers on 127.0.0.1:6379 for the cluster tests
# (conformance/tests/cluster.rs): installs Debian's redis-server when missing and starts
# one bound to loopback when none answers. Idempotent; as root, without stdin.
set -euo pipefail

if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    exit 0
fi
if ! command -v redis-server >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no
for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && exit 0
    sleep 0.2
done
echo "redis did not start on 127.0.0.1:6379" >&2
exit 1
