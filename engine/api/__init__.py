"""The admin REST API: routes, request and response schemas, permissions, OpenAPI."""
