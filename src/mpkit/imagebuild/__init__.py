"""Daemonless, reproducible adapter image builds."""
