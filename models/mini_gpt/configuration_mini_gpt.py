"""Configuration of mini_gpt, a small GPT-2 style decoder.

Imports only torch and transformers, so that `save_pretrained` can ship this file as Hub remote code.
"""

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

_SIZE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)
_DROPOUT_FIELDS = ("hidden_dropout", "attention_dropout", "embedding_dropout")
_SPECIAL_TOKEN_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


class MiniGPTConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MiniGPTModel`]: the GPT-2 architecture (learned token and position embeddings, pre-LayerNorm
    blocks, tied LM head) with readable field names.

    In transformers 5.x a config is a dataclass: the fields below are its keyword arguments, and any other
    `PreTrainedConfig` keyword (`num_labels`, `id2label`, `problem_type`, ...) is accepted too.

    Args:
        vocab_size (`int`): number of tokens in the vocabulary.
        hidden_size (`int`): width of the residual stream (GPT-2's `n_embd`).
        num_hidden_layers (`int`): number of transformer blocks.
        num_attention_heads (`int`): attention heads per block; must divide `hidden_size`.
        intermediate_size (`int`, *optional*): width of the MLP; `None` means `4 * hidden_size` as in GPT-2.
        hidden_act (`str`): MLP activation, a key of `transformers.activations.ACT2FN`.
        max_position_embeddings (`int`): longest sequence (prompt plus generated tokens) the model can handle.
        hidden_dropout (`float`): dropout on the output of each attention and MLP sublayer (GPT-2's `resid_pdrop`).
        attention_dropout (`float`): dropout on the attention probabilities (GPT-2's `attn_pdrop`).
        embedding_dropout (`float`): dropout on the sum of token and position embeddings (GPT-2's `embd_pdrop`).
        layer_norm_eps (`float`): epsilon of the LayerNorms.
        initializer_range (`float`): standard deviation of the normal weight initialisation.
        use_cache (`bool`): whether the model returns its key/value cache by default.
        tie_word_embeddings (`bool`): whether the LM head shares its weight with the token embedding.
        adaptive_softmax_cutoffs (`list[int]`, *optional*): use an adaptive softmax (Grave et al., 2017;
            `torch.nn.AdaptiveLogSoftmaxWithLoss`) as the LM head: the ids below the first cutoff (the most frequent
            words, when the vocabulary is sorted by frequency) in a full softmax, each further range of ids in a
            cluster of reduced width, so that training never builds the distribution over a large word vocabulary.
            Needs `tie_word_embeddings=False`. None (default): GPT-2's linear head.
        adaptive_softmax_div_value (`float`): each cluster's width is the previous one's divided by this.
        add_cross_attention (`bool`): add a cross-attention sublayer to every block, so that the model can be the
            decoder of an `EncoderDecoderModel` (which sets this flag itself when it builds the decoder).
        bos_token_id, eos_token_id, pad_token_id (`int`, *optional*): special token ids, within the vocabulary.
    """

    model_type = "mini_gpt"
    keys_to_ignore_at_inference = ["cache"]

    vocab_size: int = 8192
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int | None = None
    hidden_act: str = "gelu_new"
    max_position_embeddings: int = 1024
    hidden_dropout: float | int = 0.1
    attention_dropout: float | int = 0.1
    embedding_dropout: float | int = 0.1
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    tie_word_embeddings: bool = True
    adaptive_softmax_cutoffs: list[int] | None = None
    adaptive_softmax_div_value: float = 4.0
    add_cross_attention: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs):
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        self._check_fields()
        super().__post_init__(**kwargs)

    def _check_fields(self) -> None:
        """Reject impossible values here, with the field's name, rather than deep inside the model's __init__."""
        for name in _SIZE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"MiniGPTConfig.{name} must be a positive integer, got {value!r}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"MiniGPTConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        for name in _DROPOUT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"MiniGPTConfig.{name} must be a probability in [0, 1), got {value!r}.")
        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"MiniGPTConfig.{name} must be a positive number, got {value!r}.")
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"MiniGPTConfig.hidden_act must be a key of transformers.activations.ACT2FN (e.g. 'gelu_new'), "
                f"got {self.hidden_act!r}."
            )
        for name in _SPECIAL_TOKEN_FIELDS:
            value = getattr(self, name)
            token_ids = value if isinstance(value, (list, tuple)) else [value]
            for token_id in token_ids:
                if token_id is None:
                    continue
                if (
                    isinstance(token_id, bool)
                    or not isinstance(token_id, int)
                    or not 0 <= token_id < self.vocab_size
                ):
                    raise ValueError(
                        f"MiniGPTConfig.{name} must be None or a token id in [0, vocab_size={self.vocab_size}), "
                        f"got {value!r}."
                    )
        check_adaptive_softmax_fields(self)


# Copied from models.lstm_lm.configuration_lstm_lm.check_adaptive_softmax_fields
def check_adaptive_softmax_fields(config: PreTrainedConfig) -> None:
    """Raise `ValueError` naming the field when `adaptive_softmax_cutoffs` or `adaptive_softmax_div_value` cannot
    build an adaptive softmax head (`torch.nn.AdaptiveLogSoftmaxWithLoss`) over the config's vocabulary."""
    name = type(config).__name__
    cutoffs = config.adaptive_softmax_cutoffs
    if cutoffs is None:
        return
    if (
        not isinstance(cutoffs, (list, tuple))
        or not cutoffs
        or any(isinstance(c, bool) or not isinstance(c, int) for c in cutoffs)
        or list(cutoffs) != sorted(set(cutoffs))
        or cutoffs[0] <= 0
        or cutoffs[-1] >= config.vocab_size
    ):
        raise ValueError(
            f"{name}.adaptive_softmax_cutoffs must be increasing token ids between 0 and vocab_size="
            f"{config.vocab_size} (exclusive), got {cutoffs!r}."
        )
    if config.tie_word_embeddings:
        raise ValueError(
            f"{name}.adaptive_softmax_cutoffs needs tie_word_embeddings=False: the adaptive softmax's clusters have "
            "no single output matrix to share with the embedding."
        )
    div_value = config.adaptive_softmax_div_value
    if isinstance(div_value, bool) or not isinstance(div_value, (int, float)) or not div_value > 1:
        raise ValueError(f"{name}.adaptive_softmax_div_value must be a number > 1, got {div_value!r}.")
    if config.hidden_size // div_value ** len(cutoffs) < 1:
        raise ValueError(
            f"{name}.adaptive_softmax_div_value={div_value!r} leaves the last of {len(cutoffs)} clusters no width: "
            f"hidden_size={config.hidden_size} divided by it {len(cutoffs)} times is below 1."
        )


__all__ = ["MiniGPTConfig"]
