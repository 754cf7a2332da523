"""Attack programs for the sandbox tests (tests/unit/test_sandbox.py)."""
