"""The engine: a team run is a durable workflow; agent turns, model calls and tool calls are steps."""
