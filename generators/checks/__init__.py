"""Checks on a running lab. Each check is a pure function on collected JSON (see verify.py)."""
