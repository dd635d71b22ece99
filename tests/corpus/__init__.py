"""The real-workload corpus: workloads, case table, record/replay harness, table command."""
