"""Management packs: the .pak and its adapter.zip (SPEC §5)."""
