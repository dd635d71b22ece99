#!/bin/sh
# Set a hard memory limit on the shell's own memcg (v1 memory.limit_in_bytes,
# v2 memory.max), then exec the command under it.
# usage: limit.sh BYTES CMD ARGS...
set -e
. "$(dirname "$0")/lib.sh"
memcg_init
echo "$1" > "$MEMCG/$(limit_file)"
shift
exec "$@"
