"""Runnable examples. A package so that ``python -m examples.login_app`` (from the repository's root)
and mypy name the login app's modules alike; the scripts beside it run on their own."""
