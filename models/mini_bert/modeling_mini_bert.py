"""mini_bert: a small BERT-style bidirectional encoder with masked-LM and fine-tuning heads.

The architecture is BERT's, layer for layer, so that for the same sizes it has exactly the parameters of
`transformers.BertModel` / `BertForMaskedLM` (only the names differ, chosen to read top to bottom):

    embeddings = LayerNorm(word + learned position + token type) -> dropout
    each block (post-LN):   x = LayerNorm(x + dropout(attention(x)))
                            x = LayerNorm(x + dropout(down_proj(act(up_proj(x)))))
    pooler     = tanh(dense(hidden state of the first token, or the mean over the real tokens))
                                                                       (sequence classification only)
    MLM head   = decoder(LayerNorm(act(dense(x)))), decoder weight tied to the word embeddings

Attention goes through transformers' attention interface (`config._attn_implementation`: "sdpa" by default,
"eager", "flash_attention_2", "flex_attention"), and the padding mask is built by `masking_utils` in the form the
chosen implementation wants. Losses come from `self.loss_function` (transformers' loss mapping), so Trainer's
`num_items_in_batch` makes gradient accumulation exact.

This file imports only torch and transformers (plus the configuration next to it), so it travels to the Hub as
remote code.
"""

from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_mini_bert import MiniBertConfig

# --------------------------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------------------------


class MiniBertEmbeddings(nn.Module):
    """Word + learned absolute position + token type embeddings, then LayerNorm and dropout (as BERT)."""

    def __init__(self, config: MiniBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        batch_size, seq_length = inputs_embeds.shape[:2]
        device = inputs_embeds.device

        # Positions count from 0 for every row: with right padding (BERT's convention) the real tokens of a padded
        # batch sit at the same positions as when the example is run alone.
        if position_ids is None:
            if seq_length > self.position_embeddings.num_embeddings:
                raise ValueError(
                    f"Sequence length {seq_length} exceeds max_position_embeddings "
                    f"({self.position_embeddings.num_embeddings}); truncate the inputs."
                )
            position_ids = torch.arange(seq_length, device=device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch_size, seq_length), dtype=torch.long, device=device)

        embeddings = (
            inputs_embeds
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(position_ids)
        )
        return self.dropout(self.layer_norm(embeddings))


# Copied from models.mini_gpt.modeling_mini_gpt.eager_attention_forward
def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax(q k^T * scaling + mask) v. `attention_mask` is the additive float mask built by masking_utils.

    query/key/value: (batch, heads, seq, head_dim). Returns the output as (batch, seq, heads, head_dim), like the
    library's other attention functions, and the attention probabilities.
    """
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    # Softmax in float32 for stability under half precision, then back to the activations' dtype.
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class MiniBertAttention(nn.Module):
    """Bidirectional multi-head self-attention: query/key/value projections, attention, output projection."""

    def __init__(self, config: MiniBertConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        # Read by the sdpa / flash implementations: an encoder attends in both directions.
        self.is_causal = False

        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        head_shape = (*input_shape, self.num_heads, self.head_dim)
        # (batch, seq, hidden) -> (batch, heads, seq, head_dim)
        query = self.query(hidden_states).view(head_shape).transpose(1, 2)
        key = self.key(hidden_states).view(head_shape).transpose(1, 2)
        value = self.value(hidden_states).view(head_shape).transpose(1, 2)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.output(attn_output), attn_weights


class MiniBertMLP(nn.Module):
    """Position-wise feed-forward: hidden -> intermediate -> activation -> hidden."""

    def __init__(self, config: MiniBertConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.up_proj(hidden_states)))


class MiniBertLayer(GradientCheckpointingLayer):
    """One post-LN transformer block, as in BERT: LayerNorm is applied after each residual sum."""

    def __init__(self, config: MiniBertConfig, layer_idx: int):
        super().__init__()
        self.attention = MiniBertAttention(config, layer_idx)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MiniBertMLP(config)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attention_output, _ = self.attention(hidden_states, attention_mask, **kwargs)
        hidden_states = self.attention_norm(hidden_states + self.dropout(attention_output))
        hidden_states = self.mlp_norm(hidden_states + self.dropout(self.mlp(hidden_states)))
        return hidden_states


class MiniBertPooler(nn.Module):
    """tanh(dense(sentence vector)): what the sequence-classification head reads. The sentence vector is h_[CLS]
    (`classifier_pooling="cls"`, BERT's) or the mean of the real tokens' hidden states (`"mean"`)."""

    def __init__(self, config: MiniBertConfig):
        super().__init__()
        self.pooling = config.classifier_pooling
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pooling == "cls":
            sentence = hidden_states[:, 0]
        elif padding_mask is None:
            sentence = hidden_states.mean(dim=1)
        elif padding_mask.dim() != 2:
            raise ValueError(
                "classifier_pooling='mean' needs the 2D (batch, seq) attention_mask, not a 4D one."
            )
        else:  # padding positions weigh nothing, whatever their hidden states hold
            weights = padding_mask[:, :, None].to(hidden_states.dtype)
            sentence = (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.activation(self.dense(sentence))


class MiniBertLMHead(nn.Module):
    """BERT's MLM head: dense -> activation -> LayerNorm -> decoder to the vocabulary (weight tied to the
    word embeddings, own bias)."""

    def __init__(self, config: MiniBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.act(self.dense(hidden_states))))


# --------------------------------------------------------------------------------------------------------------------
# Pretrained-model base and the encoder
# --------------------------------------------------------------------------------------------------------------------


class MiniBertPreTrainedModel(PreTrainedModel):
    config: MiniBertConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MiniBertEmbeddings", "MiniBertLayer"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # Read by `capture_outputs`: hidden states are the inputs/outputs of each block, attentions the second output
    # of each attention module (None unless the eager implementation is used).
    _can_record_outputs = {"hidden_states": MiniBertLayer, "attentions": MiniBertAttention}

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation: normal(0, initializer_range) weights, zero biases, zero padding row,
        LayerNorm to identity. `init.*` skips tensors already loaded from a checkpoint."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            # The slice below loses the "already initialised" flag, so check it explicitly.
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class MiniBertModel(MiniBertPreTrainedModel):
    """The bare encoder: embeddings, `num_hidden_layers` blocks and (optionally) the pooler.

    Usable on its own (feature extraction, `AutoModel`) or as the encoder of an `EncoderDecoderModel`.
    """

    def __init__(self, config: MiniBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = MiniBertEmbeddings(config)
        self.layers = nn.ModuleList(
            [MiniBertLayer(config, layer_idx=i) for i in range(config.num_hidden_layers)]
        )
        self.pooler = MiniBertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch, seq)`): token ids (or pass `inputs_embeds`).
        attention_mask (`torch.Tensor` of shape `(batch, seq)`, *optional*): 1 for real tokens, 0 for padding.
        token_type_ids (`torch.LongTensor` of shape `(batch, seq)`, *optional*): segment ids, zeros if omitted.
        position_ids (`torch.LongTensor` of shape `(batch, seq)`, *optional*): positions, `0..seq-1` if omitted.
        inputs_embeds (`torch.Tensor` of shape `(batch, seq, hidden)`, *optional*): word embeddings to use
            instead of looking up `input_ids`.
        `output_hidden_states`, `output_attentions` and `return_dict` are handled by `capture_outputs`.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")

        hidden_states = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        )
        padding_mask = attention_mask  # the mask as given (2D for padding), for mean pooling
        # 2D padding mask -> whatever the attention implementation expects (None when nothing is masked).
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )

        for layer in self.layers:
            # hidden_states goes positionally so that gradient checkpointing propagates its gradient.
            # position_ids lets flash attention detect packed sequences, like BERT does.
            hidden_states = layer(hidden_states, attention_mask, position_ids=position_ids, **kwargs)

        pooled_output = self.pooler(hidden_states, padding_mask) if self.pooler is not None else None
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states, pooler_output=pooled_output
        )


# --------------------------------------------------------------------------------------------------------------------
# Task heads
# --------------------------------------------------------------------------------------------------------------------


class MiniBertForMaskedLM(MiniBertPreTrainedModel):
    """Encoder + BERT's MLM head; the decoder weight is the word-embedding matrix (tied)."""

    _tied_weights_keys = {"lm_head.decoder.weight": "model.embeddings.word_embeddings.weight"}
    _keys_to_ignore_on_load_unexpected = [r"pooler"]

    def __init__(self, config: MiniBertConfig):
        super().__init__(config)
        self.model = MiniBertModel(config, add_pooling_layer=False)
        self.lm_head = MiniBertLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch, seq)`, *optional*): the original ids at masked positions,
            -100 elsewhere (what `DataCollatorForLanguageModeling` produces). The loss is their cross-entropy. With
            `config.sparse_prediction` the logits are then those of the labelled positions only, (count, vocab).
        """
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if self.config.sparse_prediction and labels is not None:
            # Only the labelled (masked) positions enter the head: at a small width the vocabulary projection
            # costs more than the encoder, and ~85% of its output would be ignored by the loss.
            labelled = labels != -100
            hidden_states, labels = hidden_states[labelled], labels[labelled]
        logits = self.lm_head(hidden_states)

        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs
            )

        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class MiniBertForSequenceClassification(MiniBertPreTrainedModel):
    """Encoder + pooler + dropout + linear classifier (or regressor) on the sentence vector
    (`config.classifier_pooling`: the [CLS] hidden state or the mean over the real tokens)."""

    # The regression and multi-label losses are means that cannot use `num_items_in_batch`; without it Trainer
    # divides every loss by the gradient accumulation steps itself, which is right for all three problem types.
    accepts_loss_kwargs = False

    def __init__(self, config: MiniBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = MiniBertModel(config, add_pooling_layer=True)
        classifier_dropout = (
            config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        )
        self.dropout = nn.Dropout(classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        labels (`torch.Tensor` of shape `(batch,)` or `(batch, num_labels)`, *optional*): class ids
            (cross-entropy), floats with `num_labels == 1` (MSE regression) or multi-hot floats (BCE). The choice
            follows `config.problem_type`, inferred on first use as in `BertForSequenceClassification`.
        """
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))

        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config, **kwargs)

        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class MiniBertForTokenClassification(MiniBertPreTrainedModel):
    """Encoder + dropout + linear classifier on every token (NER, POS tagging)."""

    _keys_to_ignore_on_load_unexpected = [r"pooler"]

    def __init__(self, config: MiniBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = MiniBertModel(config, add_pooling_layer=False)
        classifier_dropout = (
            config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        )
        self.dropout = nn.Dropout(classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch, seq)`, *optional*): a class id per token, -100 to ignore.
        """
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, config=self.config, **kwargs)

        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class MiniBertForQuestionAnswering(MiniBertPreTrainedModel):
    """Encoder + a linear layer giving a start and an end logit per token (extractive QA, SQuAD style)."""

    _keys_to_ignore_on_load_unexpected = [r"pooler"]

    def __init__(self, config: MiniBertConfig):
        super().__init__(config)
        self.model = MiniBertModel(config, add_pooling_layer=False)
        # Two outputs per token, start and end (BERT reads `num_labels`, which must be 2 there anyway).
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> QuestionAnsweringModelOutput:
        r"""
        start_positions, end_positions (`torch.LongTensor` of shape `(batch,)`, *optional*): token index of the
            answer's first and last token. Positions beyond the sequence are clamped to its length and ignored
            by the loss, which is the mean of the start and end cross-entropies (as BERT).
        """
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.qa_outputs(outputs.last_hidden_state)
        start_logits, end_logits = logits.split(1, dim=-1)
        start_logits = start_logits.squeeze(-1).contiguous()
        end_logits = end_logits.squeeze(-1).contiguous()

        loss = None
        if start_positions is not None and end_positions is not None:
            loss = self.loss_function(start_logits, end_logits, start_positions, end_positions, **kwargs)

        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


__all__ = [
    "MiniBertPreTrainedModel",
    "MiniBertModel",
    "MiniBertForMaskedLM",
    "MiniBertForSequenceClassification",
    "MiniBertForQuestionAnswering",
    "MiniBertForTokenClassification",
]
