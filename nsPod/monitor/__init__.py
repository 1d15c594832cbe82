"""The per-pod monitor process: started as `python -P .../nsPod/monitor/__main__.py` by api.pods."""
