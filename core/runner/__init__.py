"""Runner processes: one llama.cpp model each, reached over gRPC on a unix socket."""
