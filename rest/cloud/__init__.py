"""Hybrid cloud mode: model names that route upstream, proxied untouched past core."""
