"""nuqi HTTP edge: FastAPI routes, store adapters, CLI.  Analysis lives in ``pipelines``."""
