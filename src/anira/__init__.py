"""anira: reproducible study of dynamic compute allocation in recurrent Transformers."""
