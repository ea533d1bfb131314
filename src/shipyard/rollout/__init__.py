"""What serves: the router's decision (which version answers a request; router.py, pure, no I/O) and
the changes asked of a running server (changes.py: load, unload, deploy, roll back)."""
