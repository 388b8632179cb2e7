"""The HTTP layer: middleware, routes and the one error envelope. Nothing below it imports FastAPI."""
