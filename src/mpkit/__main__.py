from mpkit.launcher import mpkit

mpkit()
