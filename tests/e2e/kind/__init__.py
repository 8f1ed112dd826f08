"""The kind tier (tests/e2e/kind/test_kind.py): rauta on a kind cluster, where Docker exists."""
