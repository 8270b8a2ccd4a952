"""`modelcert`: the processes (api, worker, beat, flower, migrate), operator commands, and
`certify` / `verify`, which run the engine in process with no server."""

from app.cli.main import main

__all__ = ["main"]
