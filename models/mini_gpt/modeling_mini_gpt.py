"""mini_gpt: a small GPT-2 style decoder, written to be read top to bottom like nanoGPT.

The architecture is GPT-2's (learned token and position embeddings, pre-LayerNorm blocks of causal self-attention and
MLP with residual connections, final LayerNorm, LM head tied to the token embedding), so a mini_gpt has exactly as
many parameters as a `GPT2LMHeadModel` of the same sizes. One option GPT-2 lacks: an adaptive softmax head
(`adaptive_softmax_cutoffs`) for large word vocabularies. Everything around the arithmetic is transformers
machinery: the attention-implementation registry (eager / sdpa / flash / flex), the `Cache` classes, the 5.x mask
utilities, gradient-checkpointing layers, output capturing, the shared loss functions and `GenerationMixin`.

Imports only torch and transformers, so that `save_pretrained` can ship this file as Hub remote code.
"""

from collections.abc import Callable

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    SequenceClassifierOutputWithPast,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel, slice_logits_to_keep
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_mini_gpt import MiniGPTConfig


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


def last_real_token_index(is_real_token: torch.Tensor) -> torch.Tensor:
    """Index of each row's rightmost real token, whether the padding is on the left or on the right."""
    positions = torch.arange(is_real_token.shape[-1], device=is_real_token.device)
    return (positions * is_real_token).argmax(
        -1
    )  # argmax returns the first maximum, hence position * is_real


class MiniGPTSelfAttention(nn.Module):
    """Causal multi-head self-attention with a fused query/key/value projection, as in GPT-2 and nanoGPT."""

    def __init__(self, config: MiniGPTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx  # which cache layer holds this block's keys and values
        self.hidden_size = config.hidden_size
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True  # read by the sdpa / flash attention functions

        self.c_attn = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.c_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.c_proj.is_residual_projection = True  # scaled init, see MiniGPTPreTrainedModel._init_weights
        self.resid_dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, seq_len, _ = hidden_states.shape
        heads_shape = (batch_size, seq_len, -1, self.head_dim)

        query, key, value = self.c_attn(hidden_states).split(self.hidden_size, dim=-1)
        query = query.view(heads_shape).transpose(1, 2)  # (batch, heads, seq, head_dim)
        key = key.view(heads_shape).transpose(1, 2)
        value = value.view(heads_shape).transpose(1, 2)

        if cache is not None:
            # Append this step's keys/values and get back those of the whole sequence so far.
            key, value = cache.update(key, value, self.layer_idx)

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
        attn_output = attn_output.reshape(batch_size, seq_len, -1).contiguous()
        attn_output = self.resid_dropout(self.c_proj(attn_output))
        return attn_output, attn_weights


class MiniGPTCrossAttention(nn.Module):
    """Multi-head attention from the decoder (queries) to the encoder's hidden states (keys and values).

    The encoder's keys and values are the same at every decoding step, so with an `EncoderDecoderCache` they are
    computed on the first step, stored in its cross-attention cache and reused afterwards.
    """

    def __init__(self, config: MiniGPTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.hidden_size = config.hidden_size
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = False  # every decoder position may look at every (non-padding) encoder position

        self.q_attn = nn.Linear(config.hidden_size, config.hidden_size)
        self.kv_attn = nn.Linear(config.hidden_size, 2 * config.hidden_size)
        self.c_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.c_proj.is_residual_projection = True  # scaled init, see MiniGPTPreTrainedModel._init_weights
        self.resid_dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, seq_len, _ = hidden_states.shape
        query = self.q_attn(hidden_states).view(batch_size, seq_len, -1, self.head_dim).transpose(1, 2)

        cached = cache is not None and cache.is_updated.get(self.layer_idx, False)
        if cached:
            cache_layer = cache.cross_attention_cache.layers[self.layer_idx]
            key, value = cache_layer.keys, cache_layer.values
        else:
            key, value = self.kv_attn(encoder_hidden_states).split(self.hidden_size, dim=-1)
            heads_shape = (batch_size, encoder_hidden_states.shape[1], -1, self.head_dim)
            key = key.view(heads_shape).transpose(1, 2)
            value = value.view(heads_shape).transpose(1, 2)
            if cache is not None:
                key, value = cache.cross_attention_cache.update(key, value, self.layer_idx)
                cache.is_updated[self.layer_idx] = True

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            encoder_attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        attn_output = attn_output.reshape(batch_size, seq_len, -1).contiguous()
        attn_output = self.resid_dropout(self.c_proj(attn_output))
        return attn_output, attn_weights


# GPT-2's "gelu_new" is the tanh approximation of GELU written as eight elementwise operations (transformers'
# NewGELUActivation); PyTorch's fused kernel ("gelu_pytorch_tanh") computes the same function, within 5e-7, in one.
# On CPU that makes nanoGPT's shape train 9-13% faster through the pretraining recipe (benchmarks/RESULTS.md).
FUSED_ACTIVATIONS = {"gelu_new": "gelu_pytorch_tanh"}


class MiniGPTMLP(nn.Module):
    """hidden -> intermediate -> activation -> hidden, then dropout (GPT-2's feed-forward sublayer)."""

    def __init__(self, config: MiniGPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[FUSED_ACTIVATIONS.get(config.hidden_act, config.hidden_act)]
        self.c_proj = nn.Linear(config.intermediate_size, config.hidden_size)
        self.c_proj.is_residual_projection = True  # scaled init, see MiniGPTPreTrainedModel._init_weights
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))


class MiniGPTBlock(GradientCheckpointingLayer):
    """Pre-LN transformer block: x + attn(ln_1(x)), [x + cross_attn(ln_cross_attn(x))], x + mlp(ln_2(x))."""

    def __init__(self, config: MiniGPTConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = MiniGPTSelfAttention(config, layer_idx)
        if config.add_cross_attention:
            self.ln_cross_attn = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            self.cross_attn = MiniGPTCrossAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MiniGPTMLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        # Positional, after hidden_states: under gradient checkpointing, tensors that need gradients must be
        # positional arguments (see GradientCheckpointingLayer).
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        self_attention_cache = cache
        if isinstance(cache, EncoderDecoderCache):
            self_attention_cache = cache.self_attention_cache

        attn_output, _ = self.attn(
            self.ln_1(hidden_states),
            attention_mask=attention_mask,
            cache=self_attention_cache,
            **kwargs,
        )
        hidden_states = hidden_states + attn_output

        if encoder_hidden_states is not None:
            if not hasattr(self, "cross_attn"):
                raise ValueError(
                    "encoder_hidden_states were passed but this MiniGPT has no cross-attention: build it with "
                    "MiniGPTConfig(add_cross_attention=True)."
                )
            cross_attention_cache = cache if isinstance(cache, EncoderDecoderCache) else None
            cross_attn_output, _ = self.cross_attn(
                self.ln_cross_attn(hidden_states),
                encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                cache=cross_attention_cache,
            )
            hidden_states = hidden_states + cross_attn_output

        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states


class MiniGPTPreTrainedModel(PreTrainedModel):
    config: MiniGPTConfig
    base_model_prefix = "model"
    _input_embed_layer = "wte"  # lets the inherited get/set_input_embeddings find the token embedding
    supports_gradient_checkpointing = True
    _no_split_modules = ["MiniGPTBlock"]
    _skip_keys_device_placement = ["cache"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _can_compile_fullgraph = True
    _can_record_outputs = {
        "hidden_states": MiniGPTBlock,
        "attentions": OutputRecorder(MiniGPTSelfAttention, index=1),
        "cross_attentions": OutputRecorder(MiniGPTCrossAttention, index=1),
    }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Linear/Embedding ~ N(0, initializer_range), biases 0, LayerNorm weight 1 / bias 0.
        super()._init_weights(module)
        # GPT-2's scaled init: the projections that write into the residual stream get std / sqrt(number of
        # residual sublayers), 2 per block (attention and MLP), so the residual variance does not grow with depth.
        # They are recognised by a flag on the Linear itself: for remote code, transformers skips _init_weights on
        # modules without parameters of their own (such as the attention module around c_proj).
        if isinstance(module, nn.Linear) and getattr(module, "is_residual_projection", False):
            std = self.config.initializer_range / (2 * self.config.num_hidden_layers) ** 0.5
            init.normal_(module.weight, mean=0.0, std=std)


class MiniGPTModel(MiniGPTPreTrainedModel):
    """The decoder stack without a head: returns the final LayerNorm's output (and the cache)."""

    def __init__(self, config: MiniGPTConfig):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)  # token embedding
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)  # position embedding
        self.drop = nn.Dropout(config.embedding_dropout)
        self.h = nn.ModuleList(
            [MiniGPTBlock(config, layer_idx) for layer_idx in range(config.num_hidden_layers)]
        )
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # old name: a warning, as in GPT-2
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        r"""
        input_ids / inputs_embeds: the new tokens (only those not already in `cache`), exactly one of them.
        attention_mask: 2D padding mask (1 = real token) covering cached plus new tokens, or a prepared 4D mask.
        position_ids: positions of the new tokens. If omitted they are counted from the 2D `attention_mask` (so a
            left-padded sequence starts at position 0 at its first real token) or from the cache length.
        encoder_hidden_states / encoder_attention_mask: encoder output and its 2D padding mask, for cross-attention.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("MiniGPTModel needs exactly one of input_ids or inputs_embeds.")
        if input_ids is not None:
            self.warn_if_padding_and_no_attention_mask(input_ids, attention_mask)
            inputs_embeds = self.wte(input_ids)
        seq_len = inputs_embeds.shape[1]
        if seq_len > self.config.max_position_embeddings:
            raise ValueError(
                f"Input of {seq_len} tokens is longer than max_position_embeddings="
                f"{self.config.max_position_embeddings}; truncate it or use a config with more positions."
            )

        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if use_cache and self.config.add_cross_attention and not isinstance(cache, EncoderDecoderCache):
            # Cross-attention keeps its own cache of encoder keys/values next to the self-attention one.
            cache = EncoderDecoderCache(cache, DynamicCache(config=self.config))

        if position_ids is None:
            position_ids = self._default_position_ids(inputs_embeds, attention_mask, cache)

        hidden_states = self.drop(inputs_embeds + self.wpe(position_ids))

        # The masks are built once here, in the form the configured attention implementation expects
        # (additive float for eager, boolean or None for sdpa, BlockMask for flex, ...).
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        if encoder_hidden_states is not None:
            encoder_attention_mask = create_bidirectional_mask(
                config=self.config,
                inputs_embeds=inputs_embeds,
                attention_mask=encoder_attention_mask,
                encoder_hidden_states=encoder_hidden_states,
            )

        for block in self.h:
            hidden_states = block(
                hidden_states,
                encoder_hidden_states,
                attention_mask=causal_mask,
                encoder_attention_mask=encoder_attention_mask,
                cache=cache,
                use_cache=use_cache,
                position_ids=position_ids,
                **kwargs,
            )
        hidden_states = self.ln_f(hidden_states)

        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            cache=cache if use_cache else None,
        )

    @staticmethod
    def _default_position_ids(
        inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None, cache: Cache | None
    ) -> torch.LongTensor:
        seq_len = inputs_embeds.shape[1]
        if attention_mask is not None and attention_mask.ndim == 2:
            # Count real tokens only, as generate() does: with left padding each sequence starts at position 0.
            # Padding slots get position 0; they are masked out anyway.
            position_ids = attention_mask.long().cumsum(-1) - 1
            position_ids = position_ids.masked_fill(attention_mask == 0, 0)
            return position_ids[:, -seq_len:].to(inputs_embeds.device)
        past_seen_tokens = cache.get_seq_length() if cache is not None else 0
        position_ids = torch.arange(seq_len, device=inputs_embeds.device) + past_seen_tokens
        return position_ids.unsqueeze(0)


# Copied from models.lstm_lm.modeling_lstm_lm.adaptive_softmax_outputs
def adaptive_softmax_outputs(
    lm_head: nn.AdaptiveLogSoftmaxWithLoss,
    hidden_states: torch.Tensor,
    labels: torch.Tensor | None = None,
    num_items_in_batch: int | torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(loss, logits) of an adaptive-softmax head. Without labels: no loss, and log-probabilities over the whole
    vocabulary as the logits. With labels: next-token cross-entropy as ForCausalLMLoss computes it for a linear head
    (labels shifted inside, -100 ignored, the sum divided by `num_items_in_batch` when the Trainer passes it) and no
    logits: only the targets' clusters are evaluated, which is what makes the head cheap to train."""
    if labels is None:
        log_probs = lm_head.log_prob(hidden_states.flatten(0, -2))
        return None, log_probs.view(*hidden_states.shape[:-1], -1)
    targets = nn.functional.pad(labels, (0, 1), value=-100)[..., 1:].to(hidden_states.device).flatten()
    kept = targets != -100
    target_log_probs = lm_head(hidden_states.flatten(0, -2)[kept], targets[kept]).output
    if num_items_in_batch is None:
        return -target_log_probs.mean(), None
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(target_log_probs.device)
    return -target_log_probs.sum() / num_items_in_batch, None


class MiniGPTForCausalLM(MiniGPTPreTrainedModel, GenerationMixin):
    """MiniGPTModel with a language-modelling head: tied to the token embedding unless tie_word_embeddings=False, or
    an adaptive softmax (`config.adaptive_softmax_cutoffs`)."""

    _tied_weights_keys = {"lm_head.weight": "model.wte.weight"}

    def __init__(self, config: MiniGPTConfig):
        super().__init__(config)
        self.model = MiniGPTModel(config)
        if config.adaptive_softmax_cutoffs:
            self.lm_head = nn.AdaptiveLogSoftmaxWithLoss(
                config.hidden_size,
                config.vocab_size,
                cutoffs=list(config.adaptive_softmax_cutoffs),
                div_value=config.adaptive_softmax_div_value,
            )
        else:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module | None:
        # An adaptive softmax has no (vocab_size, hidden) output matrix to tie, resize or share.
        return None if isinstance(self.lm_head, nn.AdaptiveLogSoftmaxWithLoss) else self.lm_head

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # old name: a warning, as in GPT-2
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithCrossAttentions:
        r"""
        labels: token ids aligned with `input_ids` (so `labels = input_ids` works); they are shifted inside, and
            positions labelled -100 are ignored by the loss.
        logits_to_keep: compute logits only for the last `logits_to_keep` positions (0 = all); generate() uses 1.

        With an adaptive softmax (`config.adaptive_softmax_cutoffs`) the logits are log-probabilities, and with
        `labels` they are not computed (None): the loss reads only the targets' clusters.
        """
        outputs: BaseModelOutputWithPastAndCrossAttentions = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        if isinstance(self.lm_head, nn.AdaptiveLogSoftmaxWithLoss):
            loss, logits = adaptive_softmax_outputs(self.lm_head, hidden_states, labels, **kwargs)
        else:
            logits = self.lm_head(hidden_states)
            loss = None
            if labels is not None:
                # ForCausalLMLoss: shifts the labels, ignores -100, and divides by num_items_in_batch when the
                # Trainer passes it (correct averaging under gradient accumulation).
                loss = self.loss_function(
                    logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs
                )

        return CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )


class MiniGPTForSequenceClassification(MiniGPTPreTrainedModel):
    """MiniGPTModel with a linear classifier on the hidden state of each sequence's last real token.

    A causal model has seen the whole sequence only at its last token. That token is found from the attention mask
    (or, without one, as the last token that is not `pad_token_id`), so left and right padding both work.
    """

    # The classification losses average over the batch themselves; this makes the Trainer scale them for gradient
    # accumulation instead of passing num_items_in_batch (which the regression / multi-label losses would ignore).
    accepts_loss_kwargs = False

    def __init__(self, config: MiniGPTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = MiniGPTModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # old name: a warning, as in GPT-2
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutputWithPast:
        r"""
        labels: class ids of shape (batch,) for single-label classification, floats of shape (batch, num_labels)
            for multi-label, or floats for regression (num_labels=1). `config.problem_type` picks the loss and is
            inferred from num_labels and the labels' dtype when unset.
        """
        outputs: BaseModelOutputWithPastAndCrossAttentions = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        batch_size, seq_len = hidden_states.shape[:2]

        last_token = self._last_token_index(input_ids, attention_mask, seq_len, hidden_states.device)
        pooled_hidden = hidden_states[torch.arange(batch_size, device=hidden_states.device), last_token]
        pooled_logits = self.score(pooled_hidden)

        loss = None
        if labels is not None:
            # ForSequenceClassificationLoss: MSE / cross-entropy / BCE-with-logits according to config.problem_type.
            loss = self.loss_function(labels=labels, pooled_logits=pooled_logits, config=self.config)

        return SequenceClassifierOutputWithPast(
            loss=loss,
            logits=pooled_logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def _last_token_index(
        self,
        input_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        seq_len: int,
        device: torch.device,
    ) -> torch.Tensor | int:
        if attention_mask is not None and attention_mask.ndim == 2:
            is_real_token = attention_mask[:, -seq_len:] != 0
        elif input_ids is not None and self.config.pad_token_id is not None:
            is_real_token = input_ids != self.config.pad_token_id
        else:
            # No padding information: the model attended to every position, so every position is real.
            return -1
        return last_real_token_index(is_real_token.to(device))


__all__ = [
    "MiniGPTPreTrainedModel",
    "MiniGPTModel",
    "MiniGPTForCausalLM",
    "MiniGPTForSequenceClassification",
]
