"""Sample from a causal checkpoint (lstm_lm or mini_gpt) of any output folder.

python scripts/generate.py outputs/mini_gpt-tiny --prompt "The" --max_new_tokens 50 --do_sample --top_p 0.9
"""

from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmrecipes.recipe import parse_args_with_path  # importing lmrecipes registers the model families


@dataclass
class GenerateArguments:
    model_path: str = field(metadata={"help": "Output folder or checkpoint of a causal model."})
    prompt: list[str] = field(default_factory=lambda: [""], metadata={"help": "One or more prompts."})
    max_new_tokens: int = field(default=50)
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float = field(default=1.0)
    top_k: int = field(default=0, metadata={"help": "Keep only the k most likely tokens (0: off)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (1.0: off)."})
    num_beams: int = field(default=1)
    seed: int = field(default=0)


def main() -> None:
    args = parse_args_with_path(GenerateArguments, "model_path")
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(args.model_path).eval()
    # An empty prompt starts from the beginning-of-text token.
    prompts = [p if p else tokenizer.bos_token for p in args.prompt]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    outputs = model.generate(
        **inputs,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_beams=args.num_beams,
        pad_token_id=tokenizer.pad_token_id,
    )
    for text in tokenizer.batch_decode(outputs, skip_special_tokens=True):
        print(text)
        print("-" * 40)


if __name__ == "__main__":
    main()
