"""Evaluators: turning scored utterances into reports (see report.py)."""
