"""The composition (top floor): the CLI, the worker, the ASGI entry point and the wiring of
every package's event handlers."""
