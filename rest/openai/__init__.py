"""OpenAI-compatible /v1 routes."""
