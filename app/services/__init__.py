"""Service logic between routes and pipelines/store."""
