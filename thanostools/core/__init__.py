"""The engine: formats, storage, operations. Never imports a front end."""
