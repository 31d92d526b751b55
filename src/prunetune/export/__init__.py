"""Writing a checkpoint in another runtime's format: GGUF for llama.cpp, Ollama, LM Studio (gguf_export.py)."""
