"""The model store: names, manifests, blobs, GGUF metadata."""
