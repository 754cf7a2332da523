"""One router per resource; each handler parses, calls a service and shapes the answer."""
