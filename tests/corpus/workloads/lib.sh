# Sourced by the corpus's shell workloads: where this shell's memory cgroup is.
# MEMCG = its directory (cgroup v1 memory hierarchy, or v2 unified), CGV = 1|2,
# MOUNT = the root of that hierarchy.
# Rows in /proc/self/cgroup: "N:memory:/path" (v1) or "0::/path" (v2).
memcg_init() {
    rel=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' /proc/self/cgroup)
    if [ -n "$rel" ] && [ -d /sys/fs/cgroup/memory ]; then
        CGV=1 MOUNT=/sys/fs/cgroup/memory MEMCG=/sys/fs/cgroup/memory$rel
    else
        rel=$(sed -n 's/^0::\(.*\)$/\1/p' /proc/self/cgroup)
        CGV=2 MOUNT=/sys/fs/cgroup MEMCG=/sys/fs/cgroup$rel
    fi
    [ -d "$MEMCG" ] || { echo "lib.sh: no memory cgroup directory for this shell" >&2; exit 1; }
}

# limit_file: the file that sets a hard limit (v1 memory.limit_in_bytes, v2 memory.max)
limit_file() { if [ "$CGV" = 1 ]; then echo memory.limit_in_bytes; else echo memory.max; fi; }

# make_child NAME: a child memcg of the scope. On v2 a cgroup that enables
# +memory for its children may hold no task itself ("no internal process"
# rule, Documentation/admin-guide/cgroup-v2.rst), so this shell first moves to
# a leaf "main" child; on v1 there is no such rule and it stays where it is.
make_child() {
    if [ "$CGV" = 2 ]; then
        mkdir -p "$MEMCG/main" && echo $$ > "$MEMCG/main/cgroup.procs" || exit 1
        echo +memory > "$MEMCG/cgroup.subtree_control" || exit 1
    fi
    mkdir "$MEMCG/$1" || exit 1
}
