#!/bin/sh
# Runs a command with jemalloc as its memory allocator (Debian's libjemalloc2, when installed), or
# as given with GATEWAY_ALLOCATOR=pymalloc. The container's entrypoint and bench/ start the gateway
# through it.
#
# Why: after a burst of concurrent calls CPython's own allocator keeps every 1 MiB arena that one
# surviving object still uses, and glibc keeps its heap: 1,000 calls at once left a worker 50 MB
# above its idle size for good. jemalloc hands freed pages back to the system within about a
# second (dirty_decay_ms) and measured as fast (bench/README.md, "Memory after a burst").
set -eu
if [ "${GATEWAY_ALLOCATOR:-jemalloc}" = "jemalloc" ]; then
  for lib in /usr/lib/*-linux-gnu/libjemalloc.so.2 /usr/lib/libjemalloc.so.2; do
    if [ -e "$lib" ]; then
      export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"
      export PYTHONMALLOC=malloc
      export MALLOC_CONF="${MALLOC_CONF:-background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0}"
      break
    fi
  done
fi
exec "$@"
