"""Dial plans: the node-graph schema, the compiler to an immutable plan, schedules and the pure evaluator."""
