"""The HTTP API: routes, schemas, problem details, request limits."""
