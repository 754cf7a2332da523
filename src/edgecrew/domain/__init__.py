"""Pure data and rules: no I/O and no vendor imports."""
