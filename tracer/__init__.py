"""chargetrace's live recorder: memory-cgroup charge events from a running
kernel, through BCC, into the trace format of :mod:`chargetrace.traces`.

One module per concern:

* :mod:`.bccload` finds Debian's BCC bindings from any interpreter (shim);
* :mod:`.btf` reads ``/sys/kernel/btf/vmlinux`` (enums, struct offsets, functions);
* :mod:`.headers` picks kernel headers or generates a BTF stub tree, mounts tracefs;
* :mod:`.kernel` feature-detects the accounting era and the struct offsets;
* :mod:`.catalogue` lists each logical event's candidate probes; :mod:`.trials` tries them;
* :mod:`.probecache` caches the trial results per kernel build;
* ``bpf/recorder.c`` (+ ``bpf/common.h``) is the one BPF program, variants chosen by -D flags;
  ``struct ct_event`` in common.h is the one definition of the event record;
* :mod:`.program` compiles, attaches and arms it (no event before every probe is attached);
* :mod:`.transport` moves records from the ring (or perf) buffer, counts drops;
* :mod:`.decode` turns packed records into Arrow columns in bulk (dtype from the C struct);
* :mod:`.diskwriter` decodes and writes on its own thread;
* :mod:`.cgroups` creates, samples (usage, memory.stat, OOM kills), settles and removes memcgs;
* :mod:`.scope` follows the scope's memcgs and tasks and takes the phase samples;
* :mod:`.command` starts the command inside the scope and reports its status;
* :mod:`.config` and :mod:`.recorder` are the session (:class:`RecordConfig`, :class:`Recording`).

The data path is one-way: tracer -> traces (never replay). Needs root.
"""

from .recorder import RecordConfig, Recording, RecordResult, probe_table

__all__ = ["RecordConfig", "Recording", "RecordResult", "probe_table"]
