"""Model port (ChatModel) and its adapters: scripted (tests), llama.cpp (embedded)."""
