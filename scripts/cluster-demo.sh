#!/bin/sh
# A Midge cluster on this machine: 3 nats-servers and 3 Midge nodes (see scripts/cluster-demo.mjs).
exec node "$(dirname "$0")/cluster-demo.mjs" "$@"
