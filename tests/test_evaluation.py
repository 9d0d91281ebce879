"""Scores in published units: every token scored once (sliding window, carried LSTM state), the stream joined like
the training pipeline joins rows, and the word / character normalisations."""

from __future__ import annotations

import json
import math

import pytest
import torch
from datasets import Dataset
from helpers import truncate

from lmrecipes import evaluation
from lmrecipes.data import DataArguments, build_lm_dataset
from lmrecipes.errors import RecipeError
from lmrecipes.evaluation import (
    parse_evaluation_args,
    published_benchmark,
    published_metrics,
    recurrent_nll,
    score_texts,
    sliding_window_nll,
    sliding_windows,
    tokenize_as_stream,
)
from lmrecipes.models.lstm_lm import LSTMLMConfig, LSTMLMForCausalLM
from lmrecipes.models.mini_bert import MiniBertConfig, MiniBertForMaskedLM
from lmrecipes.models.mini_gpt import MiniGPTConfig, MiniGPTForCausalLM
from lmrecipes.tokenization import train_tokenizer

WINDOW = 16

# WikiText-like rows: one line each, ending in "\n"; empty rows are blank lines.
WIKITEXT_ROWS = ["", " = Cats = \n", "", " the cat sat on a mat . \n", " a dog ran . \n"]
# PTB-like rows: one sentence each, no newline (the pipeline appends eos after each).
PTB_ROWS = ["the cat sat on a mat", "a dog ran to the house", "the big red tree"]


def tiny_gpt(tokenizer, **overrides) -> MiniGPTForCausalLM:
    torch.manual_seed(0)
    fields = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": WINDOW,
        # A large init makes the predictions depend strongly on the context, so a wrong context shows.
        "initializer_range": 0.5,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = MiniGPTConfig(**(fields | overrides))
    return MiniGPTForCausalLM(config).eval()


def tiny_lstm(tokenizer) -> LSTMLMForCausalLM:
    torch.manual_seed(0)
    config = LSTMLMConfig(
        vocab_size=len(tokenizer),
        embedding_size=32,
        hidden_size=32,
        num_hidden_layers=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LSTMLMForCausalLM(config).eval()


def reference_stream(rows: list[str], tokenizer) -> list[int]:
    """bos, then each row's tokens, eos after rows that do not end with a newline."""
    ids = [tokenizer.bos_token_id]
    for row in rows:
        ids += tokenizer(row, add_special_tokens=False)["input_ids"]
        if row and not row.endswith("\n"):
            ids.append(tokenizer.eos_token_id)
    return ids


@torch.no_grad()
def full_forward_total_nll(model, ids: list[int]) -> float:
    """Total NLL of ids[1:] from one forward over the whole sequence, through the model's own (mean) loss."""
    input_ids = torch.tensor([ids])
    return model(input_ids=input_ids, labels=input_ids).loss.item() * (len(ids) - 1)


# --- the stream: joined as the training pipeline joins rows --------------------------------------------------------


def test_stream_is_what_the_training_pipeline_packs(byte_bpe_tokenizer):
    rows = WIKITEXT_ROWS + PTB_ROWS + ["", "a last line without newline"]
    stream = tokenize_as_stream(rows, byte_bpe_tokenizer, batch_size=3)  # several tokenizer batches
    block_size = 8
    blocks = build_lm_dataset(
        Dataset.from_dict({"text": rows}), byte_bpe_tokenizer, block_size, batch_size=100
    )
    packed = [token for block in blocks["input_ids"] for token in block]
    assert len(packed) > 0 and len(stream) - len(packed) < block_size  # packing only drops the tail
    assert stream[: len(packed)] == packed
    assert stream == reference_stream(rows, byte_bpe_tokenizer)[1:]
    assert (
        stream.count(byte_bpe_tokenizer.eos_token_id) == len(PTB_ROWS) + 1
    )  # no eos after "\n" or empty rows


# --- (1) the sum over tokens equals one full forward ---------------------------------------------------------------


def test_gpt_text_in_one_window_equals_one_full_forward(byte_bpe_tokenizer):
    model = tiny_gpt(byte_bpe_tokenizer)
    rows = ["the cat sat on a mat"]
    ids = reference_stream(rows, byte_bpe_tokenizer)
    assert len(ids) - 1 <= WINDOW  # fits in one window
    scores = score_texts(model, byte_bpe_tokenizer, rows)
    assert scores.num_tokens == len(ids) - 1
    assert scores.nll == pytest.approx(full_forward_total_nll(model, ids), rel=1e-5)


def test_lstm_carried_state_equals_one_long_forward(byte_bpe_tokenizer):
    model = tiny_lstm(byte_bpe_tokenizer)
    rows = PTB_ROWS * 4
    ids = reference_stream(rows, byte_bpe_tokenizer)
    assert len(ids) > 50
    nll = recurrent_nll(model, ids[1:], ids[0], tokens_per_forward=7)  # many chunks, last one partial
    assert len(nll) == len(ids) - 1
    assert nll.sum().item() == pytest.approx(full_forward_total_nll(model, ids), rel=1e-5)
    one_chunk = recurrent_nll(model, ids[1:], ids[0], tokens_per_forward=len(ids))
    torch.testing.assert_close(nll, one_chunk, rtol=1e-5, atol=1e-5)
    # score_texts picks the recurrent path for the LSTM and gives the same total.
    scores = score_texts(model, byte_bpe_tokenizer, rows, tokens_per_forward=7)
    assert scores.scoring == {"scoring": "recurrent_state"}
    assert scores.nll == pytest.approx(nll.sum().item(), rel=1e-9)


# --- (2) sliding window: every token exactly once -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_targets", "window", "stride"),
    [
        (5, 16, 8),
        (16, 16, 8),
        (17, 16, 8),
        (100, 16, 8),
        (100, 16, 1),
        (100, 16, 16),
        (101, 16, 5),
        (40, 7, 3),
    ],
)
def test_sliding_windows_score_every_token_once(num_targets, window, stride):
    times_scored = [0] * num_targets
    for item in sliding_windows(num_targets, window, stride):
        assert 0 <= item.begin < item.end <= num_targets and item.end - item.begin <= window
        for position in range(item.end - item.num_scored, item.end):
            times_scored[position] += 1
            context = position - item.begin + 1  # inputs the prediction sees
            assert min(window - stride + 1, position + 1) <= context <= window
    assert times_scored == [1] * num_targets


def test_sliding_windows_reject_a_stride_longer_than_the_window():
    with pytest.raises(ValueError, match="stride"):
        sliding_windows(10, window=4, stride=5)


@torch.no_grad()
def test_sliding_window_nll_with_stride_one_gives_each_token_the_full_window(byte_bpe_tokenizer):
    model = tiny_gpt(byte_bpe_tokenizer)
    ids = reference_stream(PTB_ROWS * 2, byte_bpe_tokenizer)
    assert len(ids) > 2 * WINDOW
    nll = sliding_window_nll(model, ids[1:], ids[0], window=WINDOW, stride=1, tokens_per_forward=256)
    # Target ids[t] seen with the WINDOW inputs before it (fewer at the start): the first WINDOW targets from one
    # causal forward over the first WINDOW inputs, each later one from its own WINDOW-long context.
    first_logits = model(input_ids=torch.tensor([ids[:WINDOW]])).logits[0]
    later_contexts = torch.tensor([ids[target - WINDOW : target] for target in range(WINDOW + 1, len(ids))])
    later_logits = model(input_ids=later_contexts).logits[:, -1]
    log_probs = torch.log_softmax(torch.cat([first_logits, later_logits]), dim=-1)
    expected = -log_probs[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].double()
    torch.testing.assert_close(nll, expected, rtol=1e-4, atol=1e-5)
    # The model really uses its context: one input instead of a full window changes the prediction.
    short = model(input_ids=torch.tensor([ids[-2:-1]])).logits[0, -1]
    assert abs(-torch.log_softmax(short, -1)[ids[-1]].item() - expected[-1].item()) > 1e-2


def test_sliding_window_with_a_larger_stride_matches_the_first_window_and_covers_all(byte_bpe_tokenizer):
    model = tiny_gpt(byte_bpe_tokenizer)
    ids = reference_stream(PTB_ROWS * 2, byte_bpe_tokenizer)
    nll = sliding_window_nll(model, ids[1:], ids[0], window=WINDOW, stride=5)
    assert not torch.isnan(nll).any()
    # The first window's tokens are scored by one forward over the first WINDOW inputs.
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[:WINDOW]])).logits[0]
    first_window = torch.nn.functional.cross_entropy(
        logits, torch.tensor(ids[1 : WINDOW + 1]), reduction="sum"
    )
    assert nll[:WINDOW].sum().item() == pytest.approx(first_window.item(), rel=1e-5)
    scores = score_texts(model, byte_bpe_tokenizer, PTB_ROWS * 2, stride=5)
    assert scores.scoring == {"scoring": "sliding_window", "window": WINDOW, "stride": 5}
    assert scores.nll == pytest.approx(nll.sum().item(), rel=1e-9)


# --- (3) word and character normalisation -----------------------------------------------------------------------------


def test_word_perplexity_counts_words_plus_one_end_of_line_per_row(byte_bpe_tokenizer):
    model = tiny_gpt(byte_bpe_tokenizer, max_position_embeddings=64)
    # Counted by hand: "= Cats =" 3 words, "the cat sat on a mat ." 7, "a dog ran ." 4; 5 lines, blank ones included.
    num_words, num_lines = 3 + 7 + 4, 5
    num_chars = len(" = Cats = \n") + len(" the cat sat on a mat . \n") + len(" a dog ran . \n")
    assert num_chars == 11 + 25 + 14

    words = score_texts(model, byte_bpe_tokenizer, WIKITEXT_ROWS, "word")
    assert (words.num_words, words.num_lines, words.num_chars) == (num_words, num_lines, num_chars)
    assert words.nll == pytest.approx(
        full_forward_total_nll(model, reference_stream(WIKITEXT_ROWS, byte_bpe_tokenizer)), rel=1e-5
    )
    assert words.word_ppl == pytest.approx(math.exp(words.nll / (num_words + num_lines)), rel=1e-12)
    assert words.token_ppl == pytest.approx(math.exp(words.nll / words.num_tokens), rel=1e-12)
    assert words.bpc is None

    chars = score_texts(model, byte_bpe_tokenizer, WIKITEXT_ROWS, "char")
    assert chars.nll == pytest.approx(words.nll, rel=1e-12)
    assert chars.bpc == pytest.approx(words.nll / math.log(2) / num_chars, rel=1e-12)
    assert chars.word_ppl is None


def test_a_word_level_tokenizer_makes_word_perplexity_its_token_perplexity():
    """With one token per word and per line end, every unit the classic setup counts is one token of the stream:
    the two perplexities agree (blank rows aside, which the stream leaves out; here there are none)."""
    rows = [row for row in WIKITEXT_ROWS if row]
    word_tokenizer = train_tokenizer(rows * 3, kind="word", vocab_size=50)
    scores = score_texts(tiny_gpt(word_tokenizer, max_position_embeddings=64), word_tokenizer, rows, "word")
    assert scores.num_tokens == scores.num_words + scores.num_lines == 3 + 7 + 4 + 3
    assert scores.word_ppl == pytest.approx(scores.token_ppl, rel=1e-12)


# --- (4) a uniform model ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["mini_gpt", "lstm_lm"])
def test_uniform_model_has_token_perplexity_v(family, byte_bpe_tokenizer):
    if family == "mini_gpt":
        model = tiny_gpt(byte_bpe_tokenizer, tie_word_embeddings=False)
    else:
        model = tiny_lstm(byte_bpe_tokenizer)
        torch.nn.init.zeros_(model.lm_head.bias)
    torch.nn.init.zeros_(model.lm_head.weight)  # zero logits: uniform over the vocabulary
    vocab_size = model.config.vocab_size
    rows = PTB_ROWS * 3  # longer than one window
    scores = score_texts(model, byte_bpe_tokenizer, rows, "char")
    assert scores.num_tokens > WINDOW
    # Up to float32 rounding of log(V) in the per-token cross-entropy; a token counted twice or missed would be off
    # by about 1 / num_tokens.
    assert scores.token_ppl == pytest.approx(vocab_size, rel=1e-6)
    assert scores.bpc == pytest.approx(scores.num_tokens * math.log2(vocab_size) / scores.num_chars, rel=1e-6)
    assert scores.num_chars == sum(len(row) for row in rows)


# --- which datasets, which models, and the script --------------------------------------------------------------------


def test_published_benchmarks():
    assert published_benchmark("Salesforce/wikitext", "wikitext-2-v1").unit == "word"
    assert published_benchmark("/mirror/Salesforce/wikitext/", "wikitext-2-v1").unit == "word"
    assert published_benchmark("Salesforce/wikitext", "wikitext-2-raw-v1") is None  # raw text: not the words
    ptb = published_benchmark("ptb-text-only/ptb_text_only", "penn_treebank")
    assert (ptb.unit, ptb.text_column) == ("word", "sentence")
    assert published_benchmark("karpathy/tiny_shakespeare", None).unit == "char"
    assert published_benchmark("stanfordnlp/imdb", "plain_text") is None
    assert published_benchmark(None, None) is None


def test_masked_model_is_refused(wordpiece_tokenizer):
    config = MiniBertConfig(
        vocab_size=len(wordpiece_tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    model = MiniBertForMaskedLM(config)
    with pytest.raises(ValueError, match="masked language model"):
        score_texts(model, wordpiece_tokenizer, PTB_ROWS)


def test_published_metrics_for_the_pretraining_script(byte_bpe_tokenizer, monkeypatch):
    model = tiny_lstm(byte_bpe_tokenizer)
    loaded = []

    def small_split(dataset_name, dataset_config_name, split, text_column):
        loaded.append((dataset_name, dataset_config_name, split, text_column))
        return WIKITEXT_ROWS

    monkeypatch.setattr(evaluation, "load_split_texts", small_split)
    args = DataArguments(dataset_name="Salesforce/wikitext", dataset_config_name="wikitext-2-v1")
    metrics = published_metrics(model, byte_bpe_tokenizer, args)
    expected = score_texts(model, byte_bpe_tokenizer, WIKITEXT_ROWS, "word")
    assert loaded == [("Salesforce/wikitext", "wikitext-2-v1", "validation", "text")]
    assert metrics == {
        "eval_stream_token_perplexity": pytest.approx(expected.token_ppl, rel=1e-9),
        "eval_word_perplexity": pytest.approx(expected.word_ppl, rel=1e-9),
    }
    shakespeare = DataArguments(dataset_name="karpathy/tiny_shakespeare")
    assert set(published_metrics(model, byte_bpe_tokenizer, shakespeare, metric_key_prefix="test")) == {
        "test_stream_token_perplexity",
        "test_bits_per_character",
    }
    assert published_metrics(model, byte_bpe_tokenizer, DataArguments(dataset_name="stanfordnlp/imdb")) == {}


def test_evaluate_checkpoint_writes_the_results(byte_bpe_tokenizer, tmp_path):
    model_dir = tmp_path / "model"
    tiny_gpt(byte_bpe_tokenizer).save_pretrained(model_dir)
    byte_bpe_tokenizer.save_pretrained(model_dir)
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    (corpus_dir / "test.jsonl").write_text("".join(json.dumps({"text": row}) + "\n" for row in WIKITEXT_ROWS))

    args = parse_evaluation_args(
        [str(model_dir), "--dataset_name", str(corpus_dir), "--unit", "word", "--show_progress", "false"]
    )
    assert (args.model_path, args.split, args.dataset_config_name) == (str(model_dir), "test", None)
    results, path = evaluation.evaluate_checkpoint(args)
    assert path == model_dir / "lm_eval_corpus_test.json"
    written = json.loads(path.read_text())
    assert written == json.loads(json.dumps(results))
    assert (written["split"], written["unit"], written["num_words"], written["num_lines"]) == (
        "test",
        "word",
        14,
        5,
    )
    assert written["word_ppl"] == pytest.approx(math.exp(written["nll"] / (14 + 5)), rel=1e-12)
    expected = score_texts(tiny_gpt(byte_bpe_tokenizer), byte_bpe_tokenizer, WIKITEXT_ROWS, "word")
    assert written["nll"] == pytest.approx(
        expected.nll, rel=1e-5
    )  # the saved model, reloaded, scores the same


@pytest.mark.parametrize(
    "damage, problem",
    [
        ("empty folder", "the folder holds no model (it is empty)"),
        ("truncated model.safetensors", "model.safetensors is damaged or truncated ("),
    ],
)
def test_evaluate_checkpoint_names_a_damaged_or_empty_folder(byte_bpe_tokenizer, tmp_path, damage, problem):
    model_dir = tmp_path / "model"
    if damage == "empty folder":
        model_dir.mkdir()
    else:
        tiny_gpt(byte_bpe_tokenizer).save_pretrained(model_dir)
        byte_bpe_tokenizer.save_pretrained(model_dir)
        truncate(model_dir / "model.safetensors")
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    (corpus_dir / "test.jsonl").write_text("".join(json.dumps({"text": row}) + "\n" for row in WIKITEXT_ROWS))
    args = parse_evaluation_args(
        [str(model_dir), "--dataset_name", str(corpus_dir), "--show_progress", "false"]
    )
    with pytest.raises(RecipeError) as raised:
        evaluation.evaluate_checkpoint(args)
    assert str(raised.value).startswith(f"model_path={str(model_dir)!r}: {problem}")
