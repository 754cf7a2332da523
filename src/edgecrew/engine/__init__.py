"""The engine: a team run is a durable workflow; agent turns, model calls and tool calls are steps.

The graph (:mod:`.graph`) and the agent turn (:mod:`.agent`) are written against ports that
:mod:`.durable` implements on DBOS and :mod:`.fakes` in memory, for tests that take milliseconds.
"""
