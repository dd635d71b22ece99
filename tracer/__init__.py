"""chargetrace's live recorder: memory-cgroup charge events from a running
kernel, through BCC, into the trace format of :mod:`chargetrace.traces`.

One module per concern:

* :mod:`.bccload` finds Debian's BCC bindings from any interpreter (shim);
* :mod:`.btf` reads ``/sys/kernel/btf/vmlinux`` (enums, struct offsets, functions);
* :mod:`.headers` picks kernel headers or generates a BTF stub tree, mounts tracefs;
* :mod:`.kernel` feature-detects the accounting era and the struct offsets;
* :mod:`.catalogue` lists each logical event's candidate probes and trial-attaches them;
* ``bpf/recorder.c`` (+ ``bpf/common.h``) is the one BPF program, variants chosen by -D flags;
* :mod:`.transport` moves records from the ring (or perf) buffer, counts drops;
* :mod:`.decode` turns packed records into Arrow columns in bulk;
* :mod:`.cgroups` creates, samples, settles and removes scope memcgs;
* :mod:`.recorder` is the session (:class:`RecordConfig`, :class:`Recording`).

The data path is one-way: tracer -> traces (never replay). Needs root.
"""

from .recorder import RecordConfig, Recording, RecordResult, probe_table

__all__ = ["RecordConfig", "Recording", "RecordResult", "probe_table"]
