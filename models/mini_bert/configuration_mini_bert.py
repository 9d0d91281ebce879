"""Configuration of mini_bert, a small BERT-style bidirectional encoder.

The fields carry BERT's names and meanings, so a `MiniBertConfig` and a `transformers.BertConfig` with the same values
describe models of identical shape and parameter count. The defaults are the sizes of Google's BERT-mini
(4 layers, hidden 256, 4 heads).

This file imports only transformers and huggingface_hub (a transformers dependency), so it travels to the Hub as
remote code next to the weights.
"""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

# The sentence vectors the sequence-classification pooler can read (`classifier_pooling`).
CLASSIFIER_POOLINGS = ("cls", "mean")


@strict
class MiniBertConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MiniBertModel`] and its task heads.

    Args:
        vocab_size (`int`): number of tokens in the vocabulary (rows of the word embedding).
        hidden_size (`int`): width of the embeddings and of every block.
        num_hidden_layers (`int`): number of transformer blocks.
        num_attention_heads (`int`): attention heads per block; must divide `hidden_size`.
        intermediate_size (`int`): width of the feed-forward layer inside each block.
        hidden_act (`str`): activation of the feed-forward layer and of the MLM transform (a key of `ACT2FN`).
        hidden_dropout_prob (`float`): dropout on the embeddings and on the attention and feed-forward outputs.
        attention_probs_dropout_prob (`float`): dropout on the attention probabilities.
        max_position_embeddings (`int`): longest sequence the learned position embedding can encode.
        type_vocab_size (`int`): number of token types (segments A/B) in `token_type_ids`.
        initializer_range (`float`): standard deviation of the normal initialisation of weights.
        layer_norm_eps (`float`): epsilon of every LayerNorm.
        pad_token_id (`int`, *optional*): id of the padding token; its word-embedding row is kept at zero.
        classifier_dropout (`float`, *optional*): dropout before the classification heads;
            `None` means `hidden_dropout_prob`.
        classifier_pooling (`str`): the sentence vector the pooler reads: `"cls"`, the first token's hidden state
            (BERT's), or `"mean"`, the mean of the real (unpadded) tokens' hidden states. ModernBERT's option of
            the same name; mean pooling needs no pretraining objective that teaches the first token a summary.
        tie_word_embeddings (`bool`): whether the MLM decoder shares its weight with the word embeddings.
        sparse_prediction (`bool`): when [`MiniBertForMaskedLM`] is given `labels`, run the MLM head only at the
            positions that have one (the ~15% masked tokens) instead of at every position: the same loss, without
            the (batch, seq, vocab) logits. The returned logits are then (number of labelled positions, vocab).
            ModernBERT's option of the same name.

    Example:

    ```python
    >>> from lmrecipes.models.mini_bert import MiniBertConfig, MiniBertForMaskedLM
    >>> config = MiniBertConfig(vocab_size=8000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2)
    >>> model = MiniBertForMaskedLM(config)
    ```
    """

    model_type = "mini_bert"

    vocab_size: int = 30522
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    classifier_dropout: float | int | None = None
    classifier_pooling: str = "cls"
    tie_word_embeddings: bool = True
    sparse_prediction: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Checked here (not only by the `@strict` validators, which run later and wrap the error) so that a bad
        # value fails at construction with a plain ValueError naming the field.
        self.validate_mini_bert_fields()

    def validate_mini_bert_fields(self):
        """Raise a ValueError naming the first field whose value cannot build a model."""
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be a multiple of `num_attention_heads` "
                f"({self.num_attention_heads})."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {value!r}.")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"`layer_norm_eps` must be positive, got {self.layer_norm_eps!r}.")
        if self.initializer_range < 0:
            raise ValueError(f"`initializer_range` must be non-negative, got {self.initializer_range!r}.")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"`pad_token_id` ({self.pad_token_id}) must be a token id in [0, vocab_size={self.vocab_size})."
            )
        if self.classifier_pooling not in CLASSIFIER_POOLINGS:
            raise ValueError(
                f"`classifier_pooling` must be one of {CLASSIFIER_POOLINGS}, got {self.classifier_pooling!r}."
            )
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"`hidden_act` {self.hidden_act!r} is not a known activation; use one of {list(ACT2FN)}."
            )


__all__ = ["MiniBertConfig"]
