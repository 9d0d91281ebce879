"""LSTM language model: token embedding -> multi-layer LSTM (cuDNN `nn.LSTM`) -> head.

Read top to bottom:
1. `LSTMLMCacheLayer` / `LSTMLMCache`: the recurrent state `(h, c)` as a transformers `Cache`, so that `generate()`
   (greedy, sampling, beam search) carries it from step to step and each new token costs O(1).
2. `run_lstm_skipping_padding`: runs the LSTM so that padding (left, right, anywhere) changes neither the outputs at
   real positions nor the carried state.
3. `LSTMLMModel` (the backbone), `LSTMLMForCausalLM` and `LSTMLMForSequenceClassification`.

Imports only torch and transformers, so it travels to the Hub as remote code next to the weights.
"""

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)
from transformers.modeling_utils import slice_logits_to_keep
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_lstm_lm import LSTMLMConfig

# ---------------------------------------------------------------------------------------------------------------------
# Recurrent state as a transformers Cache
#
# Why a Cache subclass: transformers 5.x generation hands `cache` from step to step, asks it how many
# positions it has read (`get_seq_length`, to slice the prompt when generation resumes from a cache) and reorders it
# for beam search (`reorder_cache`). Implementing that interface lets the stock generation loop drive the LSTM with no
# custom `generate` or `prepare_inputs_for_generation`. The library's recurrent layer type (`LinearAttentionLayer`)
# is built around convolution states and, in an all-recurrent cache, makes `Cache.get_seq_length` raise; the
# library's own LSTM-like models (xLSTM, RWKV) keep ad-hoc state classes that `generate` special-cases by name. So
# this family has a small layer class of its own holding `(h, c)`.
# ---------------------------------------------------------------------------------------------------------------------


class LSTMLMCacheLayer(CacheLayerMixin):
    """Recurrent state `(h, c)` of one LSTM layer, each of shape `(batch_size, hidden_size)`.

    Unlike a key/value layer it does not grow with the sequence: `update` replaces the state and counts the positions
    consumed, so that `get_seq_length` tells how much of the input the state has already read.
    """

    is_compileable = False
    is_croppable = False  # a recurrent state cannot be rewound to an earlier position
    supports_early_init = False  # nothing to pre-allocate from key/value shapes

    def __init__(self, **kwargs):
        super().__init__()
        self.hidden_state: torch.Tensor | None = None
        self.cell_state: torch.Tensor | None = None
        self.seen_tokens = 0
        self.device: torch.device | None = None

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(seen_tokens={self.seen_tokens})"

    def lazy_initialization(self, hidden_state: torch.Tensor, cell_state: torch.Tensor) -> None:
        self.device = hidden_state.device
        self.is_initialized = True

    def update(
        self, hidden_state: torch.Tensor, cell_state: torch.Tensor, num_new_tokens: int = 0, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(hidden_state, cell_state)
        self.hidden_state, self.cell_state = hidden_state, cell_state
        self.seen_tokens += num_new_tokens
        return hidden_state, cell_state

    def get_seq_length(self) -> int:
        return self.seen_tokens

    def get_max_length(self) -> int:
        return -1  # no limit: the state has a fixed size whatever the sequence length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.seen_tokens + query_length, 0

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.is_initialized:
            beam_idx = beam_idx.to(self.hidden_state.device)
            self.hidden_state = self.hidden_state.index_select(0, beam_idx)
            self.cell_state = self.cell_state.index_select(0, beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self.hidden_state = self.hidden_state.repeat_interleave(repeats, dim=0)
            self.cell_state = self.cell_state.repeat_interleave(repeats, dim=0)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.hidden_state = self.hidden_state[indices, ...]
            self.cell_state = self.cell_state[indices, ...]

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove != 0:
            raise ValueError(
                "An LSTM state cannot be cropped: it does not keep the states of earlier positions."
            )

    def reset(self) -> None:
        # A zero state is what nn.LSTM starts from, so a reset cache behaves like a fresh one.
        if self.is_initialized:
            self.hidden_state.zero_()
            self.cell_state.zero_()
        self.seen_tokens = 0

    def offload(self) -> None:
        if self.is_initialized:
            self.hidden_state = self.hidden_state.to("cpu", non_blocking=True)
            self.cell_state = self.cell_state.to("cpu", non_blocking=True)

    def prefetch(self) -> None:
        if self.is_initialized and self.hidden_state.device != self.device:
            self.hidden_state = self.hidden_state.to(self.device, non_blocking=True)
            self.cell_state = self.cell_state.to(self.device, non_blocking=True)

    def detach_(self) -> None:
        if self.is_initialized:
            self.hidden_state = self.hidden_state.detach()
            self.cell_state = self.cell_state.detach()


class LSTMLMCache(Cache):
    """The recurrent state of every LSTM layer, passed as `cache`.

    `forward` creates one when `use_cache=True` and none is given, and returns it in `cache`; pass it back
    to continue from where the previous call stopped (generation, or truncated backpropagation through time, where
    `detach_()` cuts the gradient between chunks).
    """

    def __init__(self, config: LSTMLMConfig | None = None, num_layers: int | None = None):
        if num_layers is None:
            if config is None:
                raise ValueError("LSTMLMCache needs either `config` or `num_layers`.")
            num_layers = config.num_hidden_layers
        super().__init__(layers=[LSTMLMCacheLayer() for _ in range(num_layers)])

    def get_lstm_state(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`(h, c)` stacked as `nn.LSTM` expects them, `(num_layers, batch_size, hidden_size)`; None when empty."""
        if not all(layer.is_initialized for layer in self.layers):
            return None
        hidden_state = torch.stack([layer.hidden_state for layer in self.layers])
        cell_state = torch.stack([layer.cell_state for layer in self.layers])
        return hidden_state, cell_state

    def update_lstm_state(
        self, hidden_state: torch.Tensor, cell_state: torch.Tensor, num_new_tokens: int
    ) -> None:
        """Store `nn.LSTM`'s final `(h_n, c_n)` after it read `num_new_tokens` more positions."""
        for layer_idx in range(len(self.layers)):
            self.update(
                hidden_state[layer_idx], cell_state[layer_idx], layer_idx, num_new_tokens=num_new_tokens
            )

    def detach_(self) -> "LSTMLMCache":
        """Cut the autograd graph behind the state (truncated BPTT); the values are kept."""
        for layer in self.layers:
            layer.detach_()
        return self


# ---------------------------------------------------------------------------------------------------------------------
# Padding-exact LSTM
# ---------------------------------------------------------------------------------------------------------------------


def run_lstm_skipping_padding(
    lstm: nn.LSTM,
    inputs: torch.Tensor,
    initial_hidden: torch.Tensor | None,
    initial_cell: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run `lstm` (batch_first) over the real tokens of each row only; return `(outputs, h_n, c_n)`.

    Padding may be on the left, on the right or anywhere: each row's real tokens are moved to the front (keeping
    their order), packed with `pack_padded_sequence`, and the outputs are moved back to the positions of their tokens.
    So the outputs at real positions and the final state equal those of the row run alone without padding. Outputs at
    padding positions are zero. Plain tensors in and out, so that it can be checkpointed (reentrant or not).
    """
    initial_state = None if initial_hidden is None else (initial_hidden, initial_cell)
    if attention_mask is None or bool(attention_mask.all()):
        outputs, (final_hidden, final_cell) = lstm(inputs, initial_state)
        return outputs, final_hidden, final_cell

    batch_size, seq_len, _ = inputs.shape
    lengths = attention_mask.sum(dim=1)
    # A stable descending sort of the 0/1 mask lists each row's real positions first, in their original order.
    order = torch.sort(attention_mask.to(torch.int8), dim=1, descending=True, stable=True).indices
    compacted = inputs.gather(1, order.unsqueeze(-1).expand_as(inputs))
    # pack_padded_sequence needs lengths >= 1 (on the CPU); rows without any real token are restored below.
    packed = pack_padded_sequence(
        compacted, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
    )
    packed_outputs, (final_hidden, final_cell) = lstm(packed, initial_state)
    compacted_outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=seq_len)
    inverse_order = order.argsort(dim=1)
    outputs = compacted_outputs.gather(1, inverse_order.unsqueeze(-1).expand_as(compacted_outputs))
    outputs = outputs.masked_fill(~attention_mask.unsqueeze(-1), 0.0)

    is_empty_row = lengths == 0
    if bool(is_empty_row.any()):
        if initial_state is None:
            initial_state = (torch.zeros_like(final_hidden), torch.zeros_like(final_cell))
        keep_initial = is_empty_row.view(1, batch_size, 1)
        final_hidden = torch.where(keep_initial, initial_state[0], final_hidden)
        final_cell = torch.where(keep_initial, initial_state[1], final_cell)
    return outputs, final_hidden, final_cell


# Copied from models.mini_gpt.modeling_mini_gpt.last_real_token_index
def last_real_token_index(is_real_token: torch.Tensor) -> torch.Tensor:
    """Index of each row's rightmost real token, whether the padding is on the left or on the right."""
    positions = torch.arange(is_real_token.shape[-1], device=is_real_token.device)
    return (positions * is_real_token).argmax(
        -1
    )  # argmax returns the first maximum, hence position * is_real


# ---------------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------------


class LSTMLMPreTrainedModel(PreTrainedModel):
    config_class = LSTMLMConfig
    config: LSTMLMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = []
    _skip_keys_device_placement = ["cache"]
    # The state summarises the whole past and cannot be rolled back, so assisted decoding is refused up front.
    _is_stateful = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Scales that keep activations O(1) through a small recurrent net (the 0.02 of transformer inits leaves the
        # LSTM gates idle and trains markedly slower): embeddings N(0, initializer_range), by default 1 as in
        # nn.Embedding, also when they serve as the tied output matrix; linear layers LeCun-normal, N(0, 1 / fan_in).
        if isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=1.0 / math.sqrt(module.in_features))
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):
            # PyTorch's own LSTM init (uniform in +-1/sqrt(hidden_size)), with the forget-gate bias at 1 so that
            # gradients flow through the cell state early in training (Jozefowicz et al., 2015).
            bound = 1.0 / math.sqrt(module.hidden_size)
            for name, param in module.named_parameters():
                if name.startswith("weight"):
                    init.uniform_(param, -bound, bound)
                elif name.startswith("bias"):
                    already_loaded = getattr(param, "_is_hf_initialized", False)
                    init.zeros_(param)
                    if name.startswith("bias_ih") and not already_loaded:
                        # Gates are stacked (input, forget, cell, output) along the first dimension.
                        param[module.hidden_size : 2 * module.hidden_size].fill_(1.0)


class LSTMLMModel(LSTMLMPreTrainedModel):
    """Embedding -> dropout -> multi-layer LSTM (dropout between layers) -> dropout. Returns the top layer's outputs."""

    def __init__(self, config: LSTMLMConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.lstm = nn.LSTM(
            input_size=config.embedding_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_hidden_layers,
            dropout=config.hidden_dropout if config.num_hidden_layers > 1 else 0.0,
            batch_first=True,
        )
        self.output_dropout = nn.Dropout(config.output_dropout)
        self.gradient_checkpointing = False
        self.post_init()

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # old name: a warning, as in GPT-2
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: LSTMLMCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`): token ids.
        attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)` or `(batch_size, past + sequence_length)`):
            1 for real tokens, 0 for padding. Padding is skipped: it changes neither the outputs at real positions
            nor the state. A mask longer than the input (as `generate` passes it) is read for its last columns.
        cache (`LSTMLMCache`): the state to start from (a previous call's `cache`).
        use_cache (`bool`): return the state after this input in `cache`. Defaults to True when a cache is
            given, else to `config.use_cache` outside training.
        output_hidden_states (`bool`): also return `(embedding output, last LSTM layer output)`; the layers in
            between run fused inside `nn.LSTM` and are not exposed.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if cache is not None and not isinstance(cache, LSTMLMCache):
            raise TypeError(
                f"`cache` must be an LSTMLMCache (the recurrent state returned by a previous call), got "
                f"{type(cache).__name__}."
            )
        if use_cache is None:
            use_cache = cache is not None or (self.config.use_cache and not self.training)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states

        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch_size, seq_len, _ = inputs_embeds.shape
        attention_mask = self._current_mask(attention_mask, seq_len)

        initial_hidden = initial_cell = None
        if cache is not None and (state := cache.get_lstm_state()) is not None:
            initial_hidden, initial_cell = state
            if initial_hidden.shape[1] != batch_size:
                raise ValueError(
                    f"`cache` holds a state for batch size {initial_hidden.shape[1]}, but the input has "
                    f"batch size {batch_size}."
                )

        embeddings = self.embedding_dropout(inputs_embeds)
        lstm_inputs = (embeddings, initial_hidden, initial_cell, attention_mask)
        if self.gradient_checkpointing and self.training:
            # Only the inputs are kept; the whole fused LSTM is recomputed in the backward pass.
            outputs, final_hidden, final_cell = self._gradient_checkpointing_func(
                self._run_lstm, *lstm_inputs
            )
        else:
            outputs, final_hidden, final_cell = self._run_lstm(*lstm_inputs)
        outputs = self.output_dropout(outputs)

        if use_cache:
            if cache is None:
                cache = LSTMLMCache(self.config)
            cache.update_lstm_state(final_hidden, final_cell, num_new_tokens=seq_len)
        return BaseModelOutputWithPast(
            last_hidden_state=outputs,
            cache=cache if use_cache else None,
            hidden_states=(embeddings, outputs) if output_hidden_states else None,
        )

    def _run_lstm(
        self,
        inputs: torch.Tensor,
        initial_hidden: torch.Tensor | None,
        initial_cell: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.training and inputs.is_cuda and self.lstm.dropout > 0:
            # cuDNN draws the between-layer dropout masks from a cached state of its own, re-seeded from the torch
            # CUDA generator only after that generator was set. Setting the generator to its own state makes the
            # masks a function of the torch generator alone, which torch.utils.checkpoint rewinds before it
            # recomputes this function: the recomputation then replays the forward's masks.
            torch.cuda.set_rng_state(torch.cuda.get_rng_state(inputs.device), inputs.device)
        return run_lstm_skipping_padding(self.lstm, inputs, initial_hidden, initial_cell, attention_mask)

    @staticmethod
    def _current_mask(attention_mask: torch.Tensor | None, seq_len: int) -> torch.Tensor | None:
        """The boolean mask of the current input positions."""
        if attention_mask is None:
            return None
        if attention_mask.dim() != 2:
            raise ValueError(
                f"`attention_mask` must be 2D (batch_size, sequence_length), got shape {tuple(attention_mask.shape)}."
            )
        if attention_mask.shape[1] < seq_len:
            raise ValueError(
                f"`attention_mask` covers {attention_mask.shape[1]} positions but the input has {seq_len}."
            )
        return attention_mask[:, -seq_len:].bool()


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


class LSTMLMForCausalLM(LSTMLMPreTrainedModel, GenerationMixin):
    """LSTM language model with a next-token head, optionally tied to the input embeddings."""

    # 5.x format {target: source}; applied only when `config.tie_word_embeddings` is True.
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: LSTMLMConfig):
        super().__init__(config)
        self.model = LSTMLMModel(config)
        head_input_size = config.hidden_size
        self.output_projection = nn.Identity()
        if config.tie_word_embeddings and config.embedding_size != config.hidden_size:
            # The tied output matrix is (vocab_size, embedding_size): bring the LSTM output to that width first.
            self.output_projection = nn.Linear(config.hidden_size, config.embedding_size)
            head_input_size = config.embedding_size
        if config.adaptive_softmax_cutoffs:
            self.lm_head = nn.AdaptiveLogSoftmaxWithLoss(
                head_input_size,
                config.vocab_size,
                cutoffs=list(config.adaptive_softmax_cutoffs),
                div_value=config.adaptive_softmax_div_value,
            )
        else:
            self.lm_head = nn.Linear(head_input_size, config.vocab_size)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module | None:
        # An adaptive softmax has no (vocab_size, hidden) output matrix to tie, resize or share.
        return None if isinstance(self.lm_head, nn.AdaptiveLogSoftmaxWithLoss) else self.lm_head

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # A DynamicCache stores per-token keys/values, which an LSTM has none of: `generate` must not create one.
        # `forward` creates an LSTMLMCache on the first step instead and returns it in `cache`.
        return False

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # old name: a warning, as in GPT-2
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: LSTMLMCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`): next-token targets, *not* shifted
            (the model shifts them); -100 is ignored. Loss kwargs such as `num_items_in_batch` go to the loss.
        logits_to_keep (`int` or `torch.Tensor`): compute logits for the last `logits_to_keep` positions only
            (0 = all), or for the given positions; `generate` uses 1.
        See [`LSTMLMModel.forward`] for the other arguments.

        With an adaptive softmax (`config.adaptive_softmax_cutoffs`) the logits are log-probabilities, and with
        `labels` they are not computed (None): the loss reads only the targets' clusters, which is what makes the
        head cheap to train.
        """
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        hidden_states = self.output_projection(
            slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        )
        if isinstance(self.lm_head, nn.AdaptiveLogSoftmaxWithLoss):
            loss, logits = adaptive_softmax_outputs(self.lm_head, hidden_states, labels, **kwargs)
        else:
            logits = self.lm_head(hidden_states)
            loss = None
            if labels is not None:
                loss = self.loss_function(
                    logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs
                )
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
        )


class LSTMLMForSequenceClassification(LSTMLMPreTrainedModel):
    """LSTM with a linear classifier over a padding-aware pooling of the sequence (`config.classifier_pooling`)."""

    # The loss is a per-batch mean for every problem_type, so the Trainer scales it for gradient accumulation itself
    # instead of passing `num_items_in_batch` (which MSE and BCE would ignore).
    accepts_loss_kwargs = False

    def __init__(self, config: LSTMLMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = LSTMLMModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # old name: a warning, as in GPT-2
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: LSTMLMCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutputWithPast:
        r"""
        labels (`torch.Tensor` of shape `(batch_size,)` or `(batch_size, num_labels)`): class ids
            (single-label), floats (regression when `num_labels == 1`) or multi-hot floats (multi-label); the loss
            follows `config.problem_type`, inferred from the labels when unset, as in transformers' heads.
        Without `attention_mask`, positions holding `config.pad_token_id` are treated as padding.
        See [`LSTMLMModel.forward`] for the other arguments.
        """
        if attention_mask is None and input_ids is not None and self.config.pad_token_id is not None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        hidden_states = outputs.last_hidden_state
        batch_size, seq_len, _ = hidden_states.shape
        if attention_mask is None:
            mask = torch.ones(batch_size, seq_len, dtype=torch.bool, device=hidden_states.device)
        else:
            mask = attention_mask[:, -seq_len:].bool().to(hidden_states.device)

        if self.config.classifier_pooling == "mean":
            real_tokens = mask.sum(dim=1, keepdim=True).clamp(min=1).to(hidden_states.dtype)
            pooled = (hidden_states * mask.unsqueeze(-1)).sum(dim=1) / real_tokens
        else:
            last_real = last_real_token_index(mask)
            pooled = hidden_states[torch.arange(batch_size, device=hidden_states.device), last_real]
        logits = self.score(pooled)

        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
        )


__all__ = [
    "LSTMLMCache",
    "LSTMLMForCausalLM",
    "LSTMLMForSequenceClassification",
    "LSTMLMModel",
    "LSTMLMPreTrainedModel",
]
