"""Sample from a causal checkpoint (lstm_lm or mini_gpt) of any output folder.

    python scripts/generate.py outputs/mini_gpt-tiny --prompt "The" --max_new_tokens 50 [--top_p 0.9]
    python scripts/generate.py outputs/mini_gpt-tiny --prompt_file prompts.txt --do_sample false   # greedy

Samples by default (top-k 40, temperature 0.8, as the end-of-run sample): greedy decoding of a small model loops on
one phrase. A single prompt is streamed token by token; new tokens stop at the model's position limit.
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextStreamer

from lmrecipes.data import check_tokenizer_fits_model
from lmrecipes.errors import one_line_errors
from lmrecipes.modeling import load_pretrained, new_tokens_that_fit
from lmrecipes.recipe import parse_args_with_path  # importing lmrecipes registers the model families


@dataclass
class GenerateArguments:
    model_path: str = field(metadata={"help": "Output folder or checkpoint of a causal model."})
    prompt: list[str] = field(default_factory=lambda: [""], metadata={"help": "One or more prompts."})
    prompt_file: str | None = field(default=None, metadata={"help": "A text file with one prompt per line."})
    max_new_tokens: int = field(default=50)
    do_sample: bool = field(
        default=True, metadata={"help": "Sample (default) or, with false, decode greedily."}
    )
    temperature: float = field(default=0.8, metadata={"help": "Sampling only."})
    top_k: int = field(
        default=40, metadata={"help": "Sampling only: keep the k most likely tokens (0: off)."}
    )
    top_p: float = field(default=1.0, metadata={"help": "Sampling only: nucleus threshold (1.0: off)."})
    num_beams: int = field(default=1, metadata={"help": "Beam search when > 1."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, mps, ...; auto picks the accelerator."})
    seed: int = field(default=0)

    def __post_init__(self) -> None:
        if self.prompt_file is not None:
            path = Path(self.prompt_file)
            if not path.is_file():
                raise SystemExit(f"prompt_file={self.prompt_file!r} does not exist or is not a file")
            self.prompt = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if not self.prompt:
                raise SystemExit(f"prompt_file={self.prompt_file!r} holds no prompt")
        if self.max_new_tokens < 1:
            raise SystemExit(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


def decoding_settings(args: GenerateArguments) -> dict:
    """Only the flags that apply: transformers warns about sampling flags given to greedy decoding."""
    settings = {"do_sample": args.do_sample, "num_beams": args.num_beams}
    if args.do_sample:
        settings |= {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    return settings


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return accelerator or torch.device("cpu")


def main() -> None:
    args = parse_args_with_path(GenerateArguments, "model_path")
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    tokenizer = load_pretrained(AutoTokenizer, args.model_path, "model_path", padding_side="left")
    model = load_pretrained(AutoModelForCausalLM, args.model_path, "model_path").to(device).eval()
    check_tokenizer_fits_model(tokenizer, model.config)
    # An empty prompt starts from the beginning-of-text token.
    prompts = [p if p else tokenizer.bos_token for p in args.prompt]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    max_new_tokens = new_tokens_that_fit(model.config, inputs["input_ids"].shape[1], args.max_new_tokens)
    one_sequence = len(prompts) == 1 and args.num_beams == 1  # a streamer follows one sequence
    streamer = TextStreamer(tokenizer, skip_special_tokens=True) if one_sequence else None
    outputs = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        streamer=streamer,
        **decoding_settings(args),
    )
    if streamer is not None:
        return  # already printed as it came
    for text in tokenizer.batch_decode(outputs, skip_special_tokens=True):
        print(text)
        print("-" * 40)


if __name__ == "__main__":
    with one_line_errors():
        main()
