from mpkit.cli import run

run()
