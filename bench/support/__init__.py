"""Helpers of the runtime benches (not benches themselves: `make bench` runs only bench/*.py)."""
