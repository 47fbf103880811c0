"""Ollama native /api routes."""
