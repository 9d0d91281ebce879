"""Translation (Multi30k German -> English) with a transformers `EncoderDecoderModel`: `processing` (arguments,
pairs), `modeling` (tokenizers, model, decoding settings), `scoring` (BLEU/chrF, the trainer, written hypotheses).
The run is scripts/finetune_translation.py; what the output folder holds and how it loads: README, "Translation".
"""
