"""Orchestration: the step graph bronze -> silver -> gold -> ml -> report."""
