"""The ASGI gateway: routing, parameter parsing, headers and the API."""
