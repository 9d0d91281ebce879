"""Truncated backpropagation through time (TBPTT) for LSTM pretraining: the recurrent state carries across blocks.

The blocks are laid out as parallel streams of contiguous text (`ParallelStreamsSampler`) and `TBPTTTrainer` feeds
each micro-batch slot the detached state its previous block ended with, as the classic word-level LMs train.
docs/tbptt.md explains the layout, how batch size, processes and gradient accumulation map to streams, and when the
state restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_utils import has_length

from lmrecipes.errors import RecipeError
from lmrecipes.families import FAMILIES
from lmrecipes.training import RecipeTrainer

logger = logging.getLogger(__name__)

# Model families whose forward takes and returns a recurrent state that can be detached between blocks.
TBPTT_MODEL_TYPES = tuple(model_type for model_type, family in FAMILIES.items() if family.is_recurrent)


def parallel_stream_order(num_blocks: int, num_streams: int) -> list[int]:
    """Block indices in the order that makes row s of consecutive batches of `num_streams` rows read stream s.

    Stream s is blocks [s*S, (s+1)*S) with S = num_blocks // num_streams; position t*num_streams + s of the result
    is block s*S + t. The last `num_blocks - num_streams * S` blocks are left out.
    """
    if num_streams < 1:
        raise RecipeError(f"num_streams must be >= 1, got {num_streams}.")
    steps = num_blocks // num_streams
    return [stream * steps + step for step in range(steps) for stream in range(num_streams)]


class ParallelStreamsSampler(Sampler[int]):
    """Yields the blocks of a map-style dataset in `parallel_stream_order` (a `batchify` layout, see module doc)."""

    def __init__(self, num_blocks: int, num_streams: int):
        self.num_blocks = num_blocks
        self.num_streams = num_streams
        self.steps_per_stream = num_blocks // num_streams

    def __iter__(self) -> Iterator[int]:
        return iter(parallel_stream_order(self.num_blocks, self.num_streams))

    def __len__(self) -> int:
        return self.steps_per_stream * self.num_streams


def check_truncated_bptt_arguments(
    model_type: str, streaming: bool, training_args: TrainingArguments
) -> None:
    """Raise a clear error, before any data is prepared, for a setup truncated BPTT cannot run with."""
    if model_type not in TBPTT_MODEL_TYPES:
        raise RecipeError(
            f"truncated_bptt: only for recurrent models ({', '.join(TBPTT_MODEL_TYPES)}), "
            f"not model_type {model_type!r}."
        )
    if streaming:
        raise RecipeError(
            "truncated_bptt needs the corpus in order, as a map-style dataset: set streaming: false (a stream "
            "has no length to cut into parallel streams, and its shuffle buffer reorders the blocks)."
        )
    if training_args.train_sampling_strategy not in ("random", "sequential"):
        raise RecipeError(
            f"truncated_bptt reads the blocks in corpus order, so train_sampling_strategy="
            f"{training_args.train_sampling_strategy!r} cannot apply; leave it unset."
        )
    if not training_args.dataloader_in_order:
        raise RecipeError("truncated_bptt needs the batches in order: set dataloader_in_order: true.")
    if training_args.n_gpu > 1:
        raise RecipeError(
            f"truncated_bptt: {training_args.n_gpu} GPUs in one process (DataParallel) would split the batch but "
            "not the carried state; launch one process per GPU with accelerate launch or torchrun."
        )


class _ResetStatesAtEpochBegin(TrainerCallback):
    """Zeroes the carried training state when a `train()` call or an epoch starts."""

    def __init__(self, trainer: TBPTTTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.reset_stream_states()

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trainer.reset_stream_states()


class TBPTTTrainer(RecipeTrainer):
    """RecipeTrainer for truncated BPTT: batches are parallel streams of contiguous blocks and the state carries over.

    Each micro-batch gets as `cache` the (detached) recurrent state its streams ended the previous step
    with; see docs/tbptt.md for the layout, for several processes and for gradient accumulation.
    `carry_state_in_eval=False` evaluates each block from a zero state, as the plain Trainer does.
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        args: TrainingArguments | None = None,
        *,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        carry_state_in_eval: bool = True,
        **kwargs: Any,
    ):
        # Checked before the Trainer's own checks, whose message for a stream would be about max_steps.
        eval_sets = eval_dataset if isinstance(eval_dataset, dict) else {"": eval_dataset}
        named_sets = [("training", train_dataset)] + [
            (f"evaluation {k}".strip(), v) for k, v in eval_sets.items()
        ]
        for name, dataset in named_sets:
            if dataset is not None and not has_length(dataset):
                raise RecipeError(
                    f"truncated_bptt needs a map-style {name} dataset in corpus order, got a "
                    f"{type(dataset).__name__} without a length: set streaming: false."
                )
        super().__init__(model, args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)
        self.carry_state_in_eval = carry_state_in_eval
        model_type = getattr(getattr(self.model, "config", None), "model_type", None)
        check_truncated_bptt_arguments(model_type, streaming=False, training_args=self.args)
        # Fail now, not after training, if a set is too small for its streams.
        if self.train_dataset is not None:
            self._check_enough_blocks(len(self.train_dataset), self.num_train_streams, "training")
        if carry_state_in_eval and self.eval_dataset is not None:
            eval_sets = self.eval_dataset if isinstance(self.eval_dataset, dict) else {"": self.eval_dataset}
            for name, dataset in eval_sets.items():
                self._check_enough_blocks(len(dataset), self.num_eval_streams, f"evaluation {name}".strip())
        # One state per micro-batch index within an optimizer step; each is (rows, detached cache).
        self._train_states: dict[int, tuple[int, Any]] = {}
        self._eval_state: tuple[int, Any] | None = None
        self._micro_batch_index = 0
        self.add_callback(_ResetStatesAtEpochBegin(self))

    # ---- Layout ----

    @property
    def _data_parallel_processes(self) -> int:
        # With split_batches the DataLoader batch is already the global one, which accelerate cuts into P slices.
        return 1 if self.accelerator.split_batches else self.accelerator.num_processes

    @property
    def num_train_streams(self) -> int:
        """Parallel training streams: rows per micro-batch over all processes, times gradient accumulation."""
        return self._train_batch_size * self._data_parallel_processes * self.args.gradient_accumulation_steps

    @property
    def num_eval_streams(self) -> int:
        return self.args.eval_batch_size * self._data_parallel_processes

    def _check_enough_blocks(self, num_blocks: int, num_streams: int, name: str) -> None:
        if num_blocks < num_streams:
            batch_field = (
                "per_device_train_batch_size" if name == "training" else "per_device_eval_batch_size"
            )
            raise RecipeError(
                f"truncated_bptt: the {name} set has {num_blocks} blocks, fewer than its {num_streams} parallel "
                f"streams ({batch_field} x processes"
                f"{' x gradient_accumulation_steps' if name == 'training' else ''}); lower {batch_field} or use "
                f"more data."
            )

    def _stream_sampler(self, dataset, num_streams: int, name: str) -> ParallelStreamsSampler:
        self._check_enough_blocks(len(dataset), num_streams, name)
        sampler = ParallelStreamsSampler(len(dataset), num_streams)
        logger.info(
            "truncated BPTT %s: %d blocks as %d streams of %d blocks (%d left out at the end)",
            name,
            len(dataset),
            num_streams,
            sampler.steps_per_stream,
            len(dataset) - len(sampler),
        )
        return sampler

    def _get_train_sampler(self, train_dataset=None) -> ParallelStreamsSampler:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return self._stream_sampler(dataset, self.num_train_streams, "training")

    def _get_eval_sampler(self, eval_dataset) -> Sampler | None:
        if not self.carry_state_in_eval:
            return super()._get_eval_sampler(eval_dataset)
        return self._stream_sampler(eval_dataset, self.num_eval_streams, "evaluation")

    # ---- State carrying ----

    def reset_stream_states(self) -> None:
        """Forget the carried training state: the next step of every stream starts from zeros."""
        self._train_states = {}
        self._micro_batch_index = 0

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        self._eval_state = None  # each evaluation reads its streams from their start
        return super().evaluation_loop(*args, **kwargs)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        if model.training:
            # The Trainer runs the micro-batches of a step in order, and every step has all of them (the sampler
            # gives each process a multiple of gradient_accumulation_steps batches per epoch).
            slot = self._micro_batch_index % self.args.gradient_accumulation_steps
            self._micro_batch_index += 1
            carried = self._train_states.get(slot)
        elif self.carry_state_in_eval:
            carried = self._eval_state
        else:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        rows = inputs["input_ids"].shape[0]
        past = None
        if carried is not None and carried[0] == rows:
            past = carried[1]
        elif carried is not None:
            logger.warning(
                "truncated BPTT: a batch of %d rows after one of %d; starting it from a zero state",
                rows,
                carried[0],
            )
        inputs = {**inputs, "cache": past, "use_cache": True}
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        # Detach now: this step's graph stays reachable from `loss` for backward, the next step starts a new one.
        state = (rows, outputs.cache.detach_())
        if model.training:
            self._train_states[slot] = state
        else:
            self._eval_state = state
        return (loss, outputs) if return_outputs else loss
