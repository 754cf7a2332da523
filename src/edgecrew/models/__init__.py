"""Model port (ChatModel) and its adapters: scripted (tests), llama.cpp (embedded), LiteLLM; backends
(``edgecrew.models.backends``) are how an alias in edgecrew.yaml names one, plugins' included."""
