"""A transformer's shape, read from a Hugging Face `config.json`: what the cost model and memory planner need."""

from __future__ import annotations

from dataclasses import dataclass, replace

from servesim.errors import ServesimError

DTYPE_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp32": 4.0}
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hf_id: str
    architecture: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    qk_norm: bool = False  # Qwen3 normalises q and k per head
    attention_bias: bool = False  # Qwen2 has biases on q, k, v
    dtype: str = "bf16"

    @property
    def bytes_per_param(self) -> float:
        return DTYPE_BYTES[self.dtype]

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def params_per_layer(self) -> int:
        h = self.hidden_size
        attn = h * self.q_size + 2 * h * self.kv_size + self.q_size * h
        if self.attention_bias:
            attn += self.q_size + 2 * self.kv_size
        mlp = 3 * h * self.intermediate_size  # gated: gate, up, down
        norms = 2 * h + (2 * self.head_dim if self.qk_norm else 0)
        return attn + mlp + norms

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def num_params(self) -> int:
        lm_head = 0 if self.tie_word_embeddings else self.embedding_params
        return self.num_layers * self.params_per_layer + self.embedding_params + lm_head + self.hidden_size

    @property
    def weight_bytes(self) -> float:
        return self.num_params * self.bytes_per_param

    def kv_bytes_per_token(self, kv_dtype: str | None = None) -> float:
        """K and V for every layer, as vLLM's paged cache stores them."""
        return 2 * self.num_layers * self.kv_size * DTYPE_BYTES[kv_dtype or self.dtype]

    def with_dtype(self, dtype: str) -> "ModelSpec":
        if dtype not in DTYPE_BYTES:
            raise ServesimError(f"unknown dtype {dtype!r}; valid choices: {', '.join(DTYPE_BYTES)}")
        return replace(self, dtype=dtype)


def model_from_hf_config(config: dict, name: str = "", where: str = "config.json") -> ModelSpec:
    """Read the fields every Llama-family config carries; say which one is missing or wrong."""
    archs = config.get("architectures") or ["LlamaForCausalLM"]
    arch = archs[0]
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ServesimError(
            f"unsupported architecture {arch!r} in {where}; valid choices: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )

    def field(key: str, default=None):
        value = config.get(key, default)
        if value is None:
            raise ServesimError(f"{where}: missing field {key!r} needed for a {arch} model")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ServesimError(f"{where}: field {key!r} must be a positive integer, got {value!r}")
        return value

    hidden = field("hidden_size")
    heads = field("num_attention_heads")
    kv_heads = field("num_key_value_heads", heads)
    if heads % kv_heads:
        raise ServesimError(f"{where}: num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}")
    head_dim = config.get("head_dim") or hidden // heads
    model_type = config.get("model_type", "")
    return ModelSpec(
        name=name or config.get("_name_or_path", "") or arch,
        hf_id=config.get("_name_or_path", "") or name,
        architecture=arch,
        num_layers=field("num_hidden_layers"),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=int(head_dim),
        intermediate_size=field("intermediate_size"),
        vocab_size=field("vocab_size"),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_position_embeddings=field("max_position_embeddings", 4096),
        qk_norm=model_type == "qwen3" or arch == "Qwen3ForCausalLM",
        attention_bias=bool(config.get("attention_bias", arch == "Qwen2ForCausalLM")),
    )
