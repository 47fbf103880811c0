"""herd: a local LLM runtime. This package holds the generated gRPC stubs, a small client and the CLI."""
