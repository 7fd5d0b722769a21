"""Signed REST adapters for the exchanges: one base class, one error hierarchy (errors.py)."""
