"""Tools port: ToolSpec, the @tool decorator, the registry and built-in tools."""
