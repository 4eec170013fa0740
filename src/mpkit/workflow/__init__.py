"""The user-facing flows that wire the stages together (build → push → pack → verify)."""
