"""The warm path's light half: how a command reaches podd (client.py), the bytes they
exchange (protocol.py), and how a process forked from podd forks a pod's monitor
(forking.py). Importing it loads only the standard library: the thin `nspod` entry point
(nsPod/__main__.py) and api.pods use it; podd itself is nsPod/podd/."""
