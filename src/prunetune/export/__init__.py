"""Writing a checkpoint in another runtime's format: GGUF for llama.cpp, Ollama and LM Studio (export/gguf.py)."""
