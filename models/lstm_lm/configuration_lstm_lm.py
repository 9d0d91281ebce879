"""Configuration of the LSTM language model (`model_type = "lstm_lm"`).

Imports only torch and transformers, so it travels to the Hub as remote code next to the weights.
"""

from transformers import PreTrainedConfig

CLASSIFIER_POOLINGS = ("last", "mean")


class LSTMLMConfig(PreTrainedConfig):
    r"""
    Configuration of [`LSTMLMModel`] and its heads: token embedding -> multi-layer LSTM -> head.

    Args:
        vocab_size (`int`, defaults to 32000): number of tokens in the vocabulary.
        embedding_size (`int`, defaults to 512): width of the token embeddings (the LSTM input).
        hidden_size (`int`, defaults to 512): width of the LSTM hidden and cell states.
        num_hidden_layers (`int`, defaults to 2): number of stacked LSTM layers.
        embedding_dropout (`float`, defaults to 0.1): dropout on the token embeddings.
        hidden_dropout (`float`, defaults to 0.1): dropout between LSTM layers (the `dropout` of `nn.LSTM`).
        output_dropout (`float`, defaults to 0.1): dropout on the output of the last LSTM layer.
        initializer_range (`float`, defaults to 1.0): standard deviation of the normal initialisation of the token
            embedding, which is also the output matrix when tied. 1.0 is nn.Embedding's own; the classic word-level
            LSTMs trained with SGD at learning rate 20 start much smaller (uniform in +-0.1, std 0.058).
        tie_word_embeddings (`bool`, defaults to `True`): share the input embedding matrix with the output layer
            of the language-model head. When `embedding_size != hidden_size`, the head first projects the
            LSTM output from `hidden_size` to `embedding_size`.
        adaptive_softmax_cutoffs (`list[int]`, *optional*): use an adaptive softmax (Grave et al., 2017;
            `torch.nn.AdaptiveLogSoftmaxWithLoss`) as the language-model head: the ids below the first cutoff (the
            most frequent words, when the vocabulary is sorted by frequency) in a full softmax, each further range of
            ids in a cluster of reduced width. Training then never builds the full distribution over a large word
            vocabulary. Needs `tie_word_embeddings=False`. None (default): a plain linear head.
        adaptive_softmax_div_value (`float`, defaults to 4.0): each cluster's width is the previous one's divided
            by this.
        classifier_pooling (`str`, defaults to `"last"`): how [`LSTMLMForSequenceClassification`] pools a
            sequence: `"last"` (the last real token) or `"mean"` (the mean over real tokens).
        use_cache (`bool`, defaults to `True`): whether inference returns the recurrent state for reuse.
        pad_token_id, bos_token_id, eos_token_id (`int`, *optional*): special token ids, each `< vocab_size`.

    Example:

    ```python
    >>> config = LSTMLMConfig(vocab_size=300, embedding_size=32, hidden_size=64, num_hidden_layers=2)
    >>> model = LSTMLMForCausalLM(config)
    ```
    """

    model_type = "lstm_lm"
    # The recurrent state is not a prediction: Trainer must not try to gather it during evaluation.
    keys_to_ignore_at_inference = ["cache"]

    vocab_size: int = 32000
    embedding_size: int = 512
    hidden_size: int = 512
    num_hidden_layers: int = 2
    embedding_dropout: float = 0.1
    hidden_dropout: float = 0.1
    output_dropout: float = 0.1
    initializer_range: float = 1.0
    adaptive_softmax_cutoffs: list[int] | None = None
    adaptive_softmax_div_value: float = 4.0
    tie_word_embeddings: bool = True
    classifier_pooling: str = "last"
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Fail at construction, before a model is built or a training run starts.
        self.check_fields()

    def validate(self) -> None:
        # Also re-checked by `save_pretrained`, which calls `validate()`, in case a field was changed after init.
        super().validate()
        self.check_fields()

    def check_fields(self) -> None:
        """Raise `ValueError` naming the first field whose value cannot build a working model."""
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"LSTMLMConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("embedding_dropout", "hidden_dropout", "output_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"LSTMLMConfig.{name} must be a probability in [0, 1), got {value!r}.")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            token_ids = value if isinstance(value, (list, tuple)) else [value]
            for token_id in token_ids:
                if token_id is None:
                    continue
                if isinstance(token_id, bool) or not isinstance(token_id, int):
                    raise ValueError(f"LSTMLMConfig.{name} must be an integer token id, got {value!r}.")
                if not 0 <= token_id < self.vocab_size:
                    raise ValueError(
                        f"LSTMLMConfig.{name}={value!r} is outside the vocabulary "
                        f"(vocab_size={self.vocab_size}, valid ids are 0..{self.vocab_size - 1})."
                    )
        if (
            isinstance(self.initializer_range, bool)
            or not isinstance(self.initializer_range, (int, float))
            or (self.initializer_range <= 0)
        ):
            raise ValueError(
                f"LSTMLMConfig.initializer_range must be a positive number, got {self.initializer_range!r}."
            )
        check_adaptive_softmax_fields(self)
        if self.classifier_pooling not in CLASSIFIER_POOLINGS:
            raise ValueError(
                f"LSTMLMConfig.classifier_pooling must be one of {CLASSIFIER_POOLINGS}, "
                f"got {self.classifier_pooling!r}."
            )


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


__all__ = ["LSTMLMConfig"]
