"""Dial plans: the node-graph schema, the compiler to an immutable plan, schedules and the pure evaluator.

- ``schema``: the input format (``ConfigInputs``, node types and their fields/outputs, routing objects).
- ``compiler``: ``compile_config(inputs) -> CompileResult`` (a ``CompiledConfig`` or every error).
- ``plan``: the immutable ``CompiledConfig`` (``route()`` is one dict lookup) and the compiled node ops.
- ``schedule``: ``Schedule.is_open(at)`` on the schedule's wall clock (DST, holidays, overrides).
- ``evaluate``: ``PlanRun``, one action at a time (media actions plus ``Ring``/``LeaveVoicemail``/``Done``).
- ``errors``: ``PlanError`` -> ``PlanCompileError`` (with ``CompileIssue``s), ``PlanUsageError``.

Pure: no asyncio, sockets, clocks or threads (an import-linter contract); time is an argument.
"""
