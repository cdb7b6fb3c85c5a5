from servesim.models.spec import ModelSpec, model_from_hf_config
from servesim.models.catalog import get_model, list_models, load_model_config

__all__ = ["ModelSpec", "model_from_hf_config", "get_model", "list_models", "load_model_config"]
