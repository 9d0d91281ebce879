"""Translation fine-tuning: tiny pretraining of mini_bert and mini_gpt chained into the tiny Multi30k recipe through
`accelerate launch`, the saved model reloaded and checked against what was scored; from-scratch runs; and the label
preparation, decoding, scoring order and bad-pair skipping on their own."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import torch
import yaml
from datasets import Dataset
from helpers import (
    REPO_ROOT,
    accelerate_launch,
    needs_mirror,
    save_random_model,
    script_main,
    truncate,
    write_jsonl,
)
from transformers import (
    AutoModel,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    EncoderDecoderModel,
    EvalPrediction,
    Seq2SeqTrainingArguments,
    pipeline,
)

from lmrecipes.data import load_hub_dataset
from lmrecipes.errors import RecipeError
from lmrecipes.finetuning import FinetuneDataArguments
from lmrecipes.pipelines import register_pipelines
from lmrecipes.pipelines.translation import TRANSLATION_TASK
from lmrecipes.recipe import load_recipe, parse_recipe
from lmrecipes.training import RecipeSeq2SeqTrainingArguments
from lmrecipes.translation.modeling import (
    DECODER_TOKENIZER_FOLDER,
    build_translation_model,
    check_lengths_fit,
    generation_settings,
    load_saved_tokenizers,
    load_tokenizers,
)
from lmrecipes.translation.processing import (
    TranslationArguments,
    TranslationModelArguments,
    load_pairs,
    prepare_split,
    target_label_ids,
)
from lmrecipes.translation.scoring import TranslationScorer, decode_generated

finetune_translation = script_main("finetune_translation")

pytestmark = needs_mirror("bentrevett/multi30k")

TINY_RECIPE = "recipes/encoder_decoder/multi30k_tiny.yaml"
MULTI30K = FinetuneDataArguments(dataset_name="bentrevett/multi30k")


def tiny_from_scratch(**overrides) -> TranslationModelArguments:
    sizes = {
        f"{side}_{name}": value
        for side in ("encoder", "decoder")
        for name, value in (
            ("hidden_size", 32),
            ("num_hidden_layers", 1),
            ("num_attention_heads", 2),
            ("intermediate_size", 64),
        )
    }
    return TranslationModelArguments(from_scratch=True, **{**sizes, **overrides})


# --------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> dict[str, Path]:
    """mini_bert and mini_gpt pretrained through the real script with the tiny recipes' sizes, briefly, on a slice of
    WikiText-2 written to local files (the full split would take longer to tokenize than this whole test file)."""
    corpus = tmp_path_factory.mktemp("wikitext-slice")
    for split, lines in (("train", 1500), ("validation", 100)):
        texts = load_hub_dataset("Salesforce/wikitext", "wikitext-2-v1", split).filter(
            lambda row: row["text"].strip()
        )
        (corpus / f"{split}.txt").write_text("".join(texts.select(range(lines))["text"]), encoding="utf-8")
    folders = {}
    for family in ("mini_bert", "mini_gpt"):
        folders[family] = tmp_path_factory.mktemp(family)
        recipe = load_recipe(REPO_ROOT / f"recipes/{family}/tiny.yaml")
        recipe.pop("dataset_name"), recipe.pop("dataset_config_name")
        recipe |= {"train_file": str(corpus / "train.txt"), "validation_file": str(corpus / "validation.txt")}
        recipe |= {"max_steps": 8, "eval_strategy": "no", "eval_on_start": False, "save_strategy": "no"}
        recipe_path = corpus / f"{family}.yaml"
        recipe_path.write_text(yaml.safe_dump(recipe))
        accelerate_launch("pretrain.py", str(recipe_path), "--output_dir", str(folders[family]))
    return folders


@pytest.fixture(scope="module")
def translation_run(pretrained, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("multi30k-tiny")
    accelerate_launch(
        "finetune_translation.py",
        TINY_RECIPE,
        "--encoder_name_or_path",
        str(pretrained["mini_bert"]),
        "--decoder_name_or_path",
        str(pretrained["mini_gpt"]),
        "--output_dir",
        str(output_dir),
    )
    return output_dir


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_tiny_recipe_scores_detokenized_translations(translation_run):
    results = json.loads((translation_run / "all_results.json").read_text())
    for split in ("eval", "test"):
        rows = read_jsonl(translation_run / f"{split}_translations.jsonl")
        predictions, references = [row["prediction"] for row in rows], [row["reference"] for row in rows]
        # The reported scores are sacreBLEU's on the saved detokenized predictions against the raw references.
        assert results[f"{split}_bleu"] == pytest.approx(
            sacrebleu.corpus_bleu(predictions, [references]).score
        )
        assert results[f"{split}_chrf"] == pytest.approx(
            sacrebleu.corpus_chrf(predictions, [references]).score
        )
        assert results[f"{split}_bleu_signature"].startswith("nrefs:1|case:mixed")
        assert all(prediction == prediction.strip() for prediction in predictions)
        # The plain-text files for the official tools: sacrebleu's command line rescoring them gives the same BLEU.
        hypotheses_file, references_file = (
            translation_run / f"{split}_{kind}.txt" for kind in ("hypotheses", "references")
        )
        assert hypotheses_file.read_text(encoding="utf-8").splitlines() == predictions
        assert references_file.read_text(encoding="utf-8").splitlines() == references
        rescored = subprocess.run(
            [
                sys.executable,
                "-m",
                "sacrebleu",
                str(references_file),
                "-i",
                str(hypotheses_file),
                "-b",
                "-w",
                "4",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert float(rescored.stdout) == pytest.approx(results[f"{split}_bleu"], abs=1e-4)
    card = (translation_run / "README.md").read_text()
    assert "bentrevett/multi30k" in card and "test_bleu" in card


def test_two_processes_score_every_pair_once_in_order(pretrained, translation_run, tmp_path):
    """DDP (2 gloo processes): generation is sharded over the processes and gathered back. Every pair must be scored
    exactly once, in dataset order; an eval batch of 3 leaves the last batch uneven, which accelerate pads with
    repeats that must be dropped."""
    output_dir = tmp_path / "two_processes"
    accelerate_launch(
        "finetune_translation.py",
        TINY_RECIPE,
        *("--encoder_name_or_path", str(pretrained["mini_bert"])),
        *("--decoder_name_or_path", str(pretrained["mini_gpt"])),
        *("--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "3"),
        *("--output_dir", str(output_dir)),
        config="multi_cpu.yaml",
    )
    results = json.loads((output_dir / "all_results.json").read_text())
    for split in ("eval", "test"):
        single = read_jsonl(translation_run / f"{split}_translations.jsonl")
        double = read_jsonl(output_dir / f"{split}_translations.jsonl")
        assert len(double) == len(single)
        if split == "eval":  # 2 processes x 3 rows: the last batch is uneven, so accelerate pads it
            assert len(single) % 6 != 0
        for field in ("source", "reference"):
            assert [row[field] for row in double] == [row[field] for row in single]
        predictions, references = [row["prediction"] for row in double], [row["reference"] for row in double]
        assert results[f"{split}_bleu"] == pytest.approx(
            sacrebleu.corpus_bleu(predictions, [references]).score
        )


def test_saved_model_reloads_and_reproduces_what_was_scored(translation_run):
    rows = read_jsonl(translation_run / "eval_translations.jsonl")
    results = json.loads((translation_run / "all_results.json").read_text())
    model = EncoderDecoderModel.from_pretrained(translation_run).eval()
    source_tokenizer, target_tokenizer = load_saved_tokenizers(translation_run)
    assert (translation_run / DECODER_TOKENIZER_FOLDER / "tokenizer.json").is_file()
    assert type(model.encoder).__name__ == "MiniBertModel"
    assert type(model.decoder).__name__ == "MiniGPTForCausalLM"
    # The encoder's WordPiece tokenizer at the root, the decoder's byte-level BPE one in decoder_tokenizer/.
    assert source_tokenizer.cls_token is not None and target_tokenizer.cls_token is None
    # The Trainer aligns special tokens with the source tokenizer (processing_class): the target ones must survive.
    for config in (model.config.decoder, model.generation_config):
        assert config.pad_token_id == target_tokenizer.pad_token_id
    assert model.generation_config.num_beams == 2 and model.generation_config.max_length == 32

    # Same weights and tokenizers as scored: the teacher-forced loss on the evaluated pairs (one batch) is eval_loss.
    labels = target_label_ids(target_tokenizer, [row["reference"] for row in rows])
    features = [
        {**source_tokenizer(row["source"], return_token_type_ids=False), "labels": row_labels}
        for row, row_labels in zip(rows, labels, strict=True)
    ]
    batch = DataCollatorForSeq2Seq(source_tokenizer, model=model, label_pad_token_id=-100)(features)
    with torch.no_grad():
        assert model(**batch).loss.item() == pytest.approx(results["eval_loss"], rel=1e-5)

    # Same decoding as scored: generate() with the saved generation config, on the same batch.
    generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert decode_generated(generated.numpy(), target_tokenizer) == [row["prediction"] for row in rows]
    # And through the registered pipeline, which finds the target tokenizer in decoder_tokenizer/.
    register_pipelines()
    translate = pipeline(TRANSLATION_TASK, model=str(translation_run), device="cpu")
    outputs = translate([row["source"] for row in rows], batch_size=len(rows))
    assert [output["translation_text"].strip() for output in outputs] == [row["prediction"] for row in rows]


LOAD_WITHOUT_LMRECIPES = """
import sys
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, EncoderDecoderModel
from transformers.dynamic_module_utils import get_class_from_dynamic_module

folder = sys.argv[1]
try:
    AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
    print("trust_remote_code: loaded")
except ValueError as error:
    print("trust_remote_code: failed:", str(error)[:80])
for family, config_name, model_name, auto_class in (
    ("mini_bert", "MiniBertConfig", "MiniBertModel", AutoModel),
    ("mini_gpt", "MiniGPTConfig", "MiniGPTForCausalLM", AutoModelForCausalLM),
):
    config_class = get_class_from_dynamic_module(f"configuration_{family}.{config_name}", folder)
    AutoConfig.register(family, config_class)
    auto_class.register(config_class, get_class_from_dynamic_module(f"modeling_{family}.{model_name}", folder))
model = EncoderDecoderModel.from_pretrained(folder)
print("registered:", type(model.decoder).__module__, "lmrecipes" in sys.modules)
"""


def test_saved_folder_carries_the_family_code(translation_run):
    """trust_remote_code alone cannot build the sub-configs (transformers resolves them by model type only), but the
    code files travel with the weights: registering them loads the model in a Python without lmrecipes."""
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_LMRECIPES, str(translation_run)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=translation_run,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trust_remote_code: failed: Unrecognized model type for subconfig: mini_bert" in result.stdout
    assert "registered: transformers_modules." in result.stdout and "modeling_mini_gpt False" in result.stdout


@pytest.mark.parametrize("shared", [False, True], ids=["separate_tokenizers", "shared_tokenizer"])
def test_from_scratch_trains_tokenizers_on_the_pairs(shared, tmp_path):
    output_dir = tmp_path / "scratch"
    training_args = Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        max_steps=2,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        predict_with_generate=True,
        generation_max_length=8,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        # Evaluation batches must stay in dataset order even so (the scorer fails on misaligned references).
        train_sampling_strategy="group_by_length",
    )
    data_args = FinetuneDataArguments(
        dataset_name="bentrevett/multi30k", max_train_samples=64, max_eval_samples=8
    )
    task_args = TranslationArguments(max_source_length=48, max_target_length=48)
    metrics = finetune_translation(
        tiny_from_scratch(shared_tokenizer=shared, tokenizer_vocab_size=400),
        data_args,
        task_args,
        training_args,
    )
    assert {"eval_bleu", "eval_chrf"} <= metrics.keys()

    model = EncoderDecoderModel.from_pretrained(output_dir)
    source_tokenizer, target_tokenizer = load_saved_tokenizers(output_dir)
    assert (source_tokenizer is target_tokenizer) == shared
    assert (output_dir / DECODER_TOKENIZER_FOLDER).is_dir() != shared
    # Trained on the German side: a common German word is one token, not many English pieces.
    assert len(source_tokenizer.tokenize(" und")) == 1
    assert model.config.encoder.vocab_size == len(source_tokenizer)
    assert model.config.decoder.vocab_size == len(target_tokenizer)
    assert model.config.encoder.max_position_embeddings == 48 and model.config.encoder.hidden_size == 32


def test_from_scratch_with_pretrained_folders_randomises_the_warm_start(pretrained, byte_bpe_tokenizer):
    folders = {
        "encoder_name_or_path": str(pretrained["mini_bert"]),
        "decoder_name_or_path": str(pretrained["mini_gpt"]),
    }
    model_args = TranslationModelArguments(from_scratch=True, **folders)
    assert not model_args.trains_tokenizers
    source_tokenizer, target_tokenizer = load_tokenizers(model_args, TranslationArguments(), None, None)
    assert source_tokenizer.vocab == AutoTokenizer.from_pretrained(pretrained["mini_bert"]).vocab
    models = {
        from_scratch: build_translation_model(
            TranslationModelArguments(from_scratch=from_scratch, **folders),
            source_tokenizer,
            target_tokenizer,
            max_source_positions=64,
            max_target_positions=64,
        )
        for from_scratch in (False, True)
    }
    warm, random = models[False], models[True]
    assert random.config.decoder.add_cross_attention and random.config.decoder.is_decoder
    for side in ("encoder", "decoder"):
        assert getattr(random.config, side).to_diff_dict() == getattr(warm.config, side).to_diff_dict()
    assert random.num_parameters() == warm.num_parameters()
    pretrained_encoder = AutoModel.from_pretrained(pretrained["mini_bert"])
    embedding = pretrained_encoder.get_input_embeddings().weight
    assert torch.equal(warm.encoder.get_input_embeddings().weight, embedding)
    assert not torch.equal(random.encoder.get_input_embeddings().weight, embedding)
    with pytest.raises(ValueError, match="shared_tokenizer only applies"):
        TranslationModelArguments(from_scratch=True, shared_tokenizer=True, **folders)


# --------------------------------------------------------------------------------------------- pieces


def test_labels_are_target_tokens_then_eos_padded_with_ignore_index(wordpiece_tokenizer, byte_bpe_tokenizer):
    model = build_translation_model(
        tiny_from_scratch(),
        wordpiece_tokenizer,
        byte_bpe_tokenizer,
        max_source_positions=32,
        max_target_positions=32,
    ).eval()
    sources, targets = (
        ["the cat sat on the mat.", "a dog ran."],
        ["the cat sat on the big red mat.", "a dog."],
    )
    labels = target_label_ids(byte_bpe_tokenizer, targets)
    for row, target in zip(labels, targets, strict=True):
        assert row[-1] == byte_bpe_tokenizer.eos_token_id
        assert byte_bpe_tokenizer.decode(row[:-1]) == target

    features = [
        {**wordpiece_tokenizer(source, return_token_type_ids=False), "labels": row}
        for source, row in zip(sources, labels, strict=True)
    ]
    batch = DataCollatorForSeq2Seq(wordpiece_tokenizer, model=model, label_pad_token_id=-100)(features)
    short = len(labels[1])
    assert batch["labels"][1, :short].tolist() == labels[1] and (batch["labels"][1, short:] == -100).all()
    # Decoder inputs: the decoder start token (bos), then the labels shifted right, padding as the target's pad.
    assert batch["decoder_input_ids"][1, 0] == byte_bpe_tokenizer.bos_token_id
    assert batch["decoder_input_ids"][1, 1:short].tolist() == labels[1][:-1]
    assert (batch["decoder_input_ids"][1, short + 1 :] == byte_bpe_tokenizer.pad_token_id).all()

    # Padding changes nothing for the shorter pair: same logits alone and in the padded batch, and the loss of the
    # batch is the mean over real label tokens only.
    with torch.no_grad():
        together = model(**batch)
        alone = model(**DataCollatorForSeq2Seq(wordpiece_tokenizer, model=model)([features[1]]))
    torch.testing.assert_close(together.logits[1, :short], alone.logits[0], atol=1e-5, rtol=1e-4)
    token_losses = torch.nn.functional.cross_entropy(
        together.logits.flatten(0, 1), batch["labels"].flatten(), reduction="none", ignore_index=-100
    )
    assert together.loss.item() == pytest.approx(
        token_losses.sum().item() / (batch["labels"] != -100).sum().item()
    )


def test_decoding_stops_at_eos_whatever_the_padding(byte_bpe_tokenizer):
    tokenizer = byte_bpe_tokenizer
    words = tokenizer(" cat sat", add_special_tokens=False)["input_ids"]
    eos, start = tokenizer.eos_token_id, tokenizer.bos_token_id
    # After eos: the Seq2SeqTrainer pads with the *source* tokenizer's pad id, which may be a real target token,
    # and with -100 between batches.
    rows = [
        [start, *words, eos, words[0], words[0]],
        [start, *words, eos, -100, -100],
        [start, *words, words[0], -100],
    ]
    width = max(map(len, rows))
    rows = [row + [-100] * (width - len(row)) for row in rows]
    assert decode_generated(np.array(rows), tokenizer) == [
        "cat sat",
        "cat sat",
        tokenizer.decode([*words, words[0]]).strip(),
    ]


def test_scorer_refuses_translations_out_of_reference_order(byte_bpe_tokenizer):
    references = ["the cat sat.", "a dog ran to the house."]
    scorer = TranslationScorer(byte_bpe_tokenizer, references)
    labels = target_label_ids(byte_bpe_tokenizer, references)
    width = max(map(len, labels)) + 2
    padded = np.array([row + [-100] * (width - len(row)) for row in labels])
    start = byte_bpe_tokenizer.bos_token_id
    generated = np.array([[start, *row] + [-100] * (width - len(row)) for row in labels])
    metrics = scorer(EvalPrediction(predictions=generated, label_ids=padded))
    assert scorer.predictions == references and metrics["bleu"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="evaluation row 0 does not hold the reference 'the cat sat.'"):
        scorer(EvalPrediction(predictions=generated[::-1], label_ids=padded[::-1]))


def test_bad_pairs_are_skipped_with_one_summary_line(wordpiece_tokenizer, byte_bpe_tokenizer, caplog):
    task_args = TranslationArguments(
        source_lang="de", target_lang="en", max_source_length=8, max_target_length=12
    )
    good = {"de": "the cat sat.", "en": "a dog ran."}
    rows = [
        good,
        {"de": "", "en": "a dog ran."},
        {"de": "the cat.", "en": None},
        {"de": "the cat.", "en": "   "},
        {"de": "the cat sat on the mat and the dog ran to the house.", "en": "a dog."},
        {"de": "the cat.", "en": "the cat sat on the big red mat and ran."},
        {"de": "a dog.", "en": "the cat."},
    ]
    dataset = Dataset.from_list(rows)
    with caplog.at_level(logging.WARNING, logger="lmrecipes.data"):
        inputs, sources, references = prepare_split(
            dataset, wordpiece_tokenizer, byte_bpe_tokenizer, task_args, MULTI30K, "train split 'x'"
        )
    assert sources == ["the cat sat.", "a dog."] and references == ["a dog ran.", "the cat."]
    assert inputs.column_names == ["input_ids", "attention_mask", "labels"] and len(inputs) == 2
    summary = [record.getMessage() for record in caplog.records if "skipped" in record.getMessage()]
    assert summary == [
        "train split 'x': skipped 5 of 7 examples "
        "(2 empty target, 1 empty source, 1 source over 8 tokens, 1 target over 12 tokens)"
    ]
    with pytest.raises(ValueError, match="train split 'x': no usable example left after skipping 2"):
        prepare_split(
            Dataset.from_list(rows[1:3]),
            wordpiece_tokenizer,
            byte_bpe_tokenizer,
            task_args,
            MULTI30K,
            "train split 'x'",
        )


def test_wmt_style_translation_column(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"translation": {"de": "Ein Hund.", "en": "A dog."}}) + "\n")
    data_args = FinetuneDataArguments(train_file=str(path))
    pairs = load_pairs(data_args, TranslationArguments(), "train")
    assert pairs.column_names == ["de", "en"] and pairs[0] == {"de": "Ein Hund.", "en": "A dog."}
    with pytest.raises(ValueError, match=r"no text for \['fr'\]"):
        load_pairs(data_args, TranslationArguments(source_lang="fr"), "train")


def test_recipe_mistakes_fail_before_training(wordpiece_tokenizer, byte_bpe_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="decoder_name_or_path: name the pretrained"):
        TranslationModelArguments(from_scratch=True, encoder_name_or_path="outputs/mini_bert-tiny")
    with pytest.raises(ValueError, match="decoder_name_or_path: name the pretrained"):
        TranslationModelArguments(encoder_name_or_path="outputs/mini_bert-tiny")
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="predict_with_generate must be true"):
        generation_settings(args, TranslationArguments())
    model = build_translation_model(
        tiny_from_scratch(),
        wordpiece_tokenizer,
        byte_bpe_tokenizer,
        max_source_positions=16,
        max_target_positions=16,
    )
    with pytest.raises(
        ValueError, match="max_source_length=64 exceeds the encoder's max_position_embeddings=16"
    ):
        check_lengths_fit(model, TranslationArguments(max_source_length=64, max_target_length=16), 17)
    with pytest.raises(ValueError, match="generation_max_length=40 needs 39 decoder positions"):
        check_lengths_fit(model, TranslationArguments(max_source_length=16, max_target_length=16), 40)


@pytest.fixture
def warm_start_folders(wordpiece_tokenizer, byte_bpe_tokenizer, tmp_path) -> dict[str, Path]:
    """Random tiny encoder and decoder folders; the decoder's 256 embeddings are fewer than its tokenizer's 320."""
    return {
        "encoder_name_or_path": save_random_model("mini_bert", tmp_path / "encoder", wordpiece_tokenizer),
        "decoder_name_or_path": save_random_model(
            "mini_gpt", tmp_path / "decoder", byte_bpe_tokenizer, vocab_size=256
        ),
    }


def test_a_target_tokenizer_larger_than_the_decoder_fails_before_training(warm_start_folders, tmp_path):
    """The warm start's tokenizer/vocabulary check names the decoder folder, before any training step."""
    rows = [{"de": "die katze sitzt.", "en": "the cat sat on the mat."}] * 4
    data_args = FinetuneDataArguments(
        train_file=str(write_jsonl(tmp_path / "train.jsonl", rows)),
        validation_file=str(write_jsonl(tmp_path / "validation.jsonl", rows)),
    )
    output_dir = tmp_path / "run"
    training_args = Seq2SeqTrainingArguments(
        output_dir=str(output_dir), max_steps=1, predict_with_generate=True, report_to="none", use_cpu=True
    )
    model_args = TranslationModelArguments(**{name: str(path) for name, path in warm_start_folders.items()})
    task_args = TranslationArguments(max_source_length=32, max_target_length=32)
    decoder = str(warm_start_folders["decoder_name_or_path"])
    with pytest.raises(RecipeError) as raised:
        finetune_translation(model_args, data_args, task_args, training_args)
    assert str(raised.value).startswith(
        f"The tokenizer of {decoder!r} has 320 tokens but the model's vocab_size is 256 (model of {decoder!r})"
    )
    assert not list(output_dir.glob("checkpoint-*"))


def test_a_damaged_or_empty_warm_start_folder_is_named(
    warm_start_folders, wordpiece_tokenizer, byte_bpe_tokenizer
):
    encoder, decoder = warm_start_folders["encoder_name_or_path"], warm_start_folders["decoder_name_or_path"]
    folders = {name: str(path) for name, path in warm_start_folders.items()}
    truncate(decoder / "model.safetensors")
    with pytest.raises(
        RecipeError, match=re.escape(f"decoder_name_or_path={str(decoder)!r}: model.safetensors is damaged")
    ):
        build_translation_model(
            TranslationModelArguments(**folders),
            wordpiece_tokenizer,
            byte_bpe_tokenizer,
            max_source_positions=32,
            max_target_positions=32,
        )
    shutil.rmtree(encoder)
    encoder.mkdir()
    with pytest.raises(
        RecipeError, match=re.escape(f"encoder_name_or_path={str(encoder)!r}: the folder holds no tokenizer")
    ):
        load_tokenizers(TranslationModelArguments(**folders), TranslationArguments(), None, None)
    with pytest.raises(
        RecipeError, match=re.escape(f"encoder_name_or_path={str(encoder)!r}: the folder holds no model")
    ):
        build_translation_model(
            TranslationModelArguments(from_scratch=True, **folders),
            wordpiece_tokenizer,
            byte_bpe_tokenizer,
            max_source_positions=32,
            max_target_positions=32,
        )


@pytest.mark.parametrize(
    "recipe",
    [
        "recipes/encoder_decoder/multi30k.yaml",
        "recipes/encoder_decoder/multi30k_warm_start.yaml",
        "recipes/encoder_decoder/multi30k_in_domain.yaml",
    ],
)
def test_full_size_recipes_parse(recipe, tmp_path):
    """The recipes too long for the tests still name only real fields with valid values."""
    model_args, _, task_args, training_args, _ = parse_recipe(
        (
            TranslationModelArguments,
            FinetuneDataArguments,
            TranslationArguments,
            RecipeSeq2SeqTrainingArguments,
        ),
        [str(REPO_ROOT / recipe), "--output_dir", str(tmp_path)],
    )
    assert training_args.predict_with_generate and training_args.generation_num_beams == 4
    assert model_args.trains_tokenizers == (recipe.endswith("multi30k.yaml"))
    generation_settings(training_args, task_args)  # the decoding settings fit together
