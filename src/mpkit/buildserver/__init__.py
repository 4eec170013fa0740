"""The resident build server: a warm, pre-imported mpkit that forks one child per command.

``launcher`` sends a command (argv, cwd, environment, umask and the terminal's file
descriptors) over a Unix socket; the server forks, the child becomes that command, and its
exit status goes back to the client. This removes Python start-up and imports (~0.3 s)
from every command. See README "Resident build server".
"""
