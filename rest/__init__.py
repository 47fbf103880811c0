"""herd gateway: Sanic app translating Ollama and OpenAI HTTP dialects to the herd.v1 gRPC API."""
