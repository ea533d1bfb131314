"""shipyard on engines users already run: Ray Serve (ray_serve.py). Imported only by the commands
that ask for an engine; Ray is an optional extra."""
