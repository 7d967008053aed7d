"""The prompts, character for character as MMAD's and EIAD's scripts build them.

The reference builders below transcribe the scripts' own string operations (MMAD
``evaluation/examples/Transformers/minicpm_query.py`` with ``GPT4/gpt4v.py``'s
``parse_conversation`` and ``instruction``, ``qwen2_5_vl_query.py``; EIAD ``eval/evaluation.py``),
written independently of eiad.benchmark.protocols, and are compared with what eiad asks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import config

from eiad.benchmark.mmad import load_benchmark, load_domain_knowledge
from eiad.benchmark.protocols import PROTOCOLS, Asking, history_entry, plan
from eiad.errors import ConfigError, DataError
from eiad.evaluation.config import EvalConfig
from eiad.questions import ImageRef

MMAD_INSTRUCTION = '''
You are an industrial inspector who checks products by images. You should judge whether there is a defect in the query image and answer the questions about it.
Answer with the option's letter from the given choices directly.
'''

ENTRY = {
    "image_path": "DS-MVTec/bottle/image/broken_large/000.png",
    "mask_path": "rbg_mask/broken_large/000_rbg_mask.png",
    "conversation": [
        {"Question": "Is there any defect in the object?", "Answer": "A", "Options": {"A": "Yes", "B": "No"},
         "type": "Anomaly Detection", "annotation": True},
        {"Question": "What is the type of the defect?", "Answer": "C",
         "Options": {"A": "Scratch", "B": "Contamination", "C": "Broken", "D": "Hole"},
         "type": "Defect Classification", "annotation": True},
        {"Question": "Where is the defect?", "Answer": "B", "Options": {"A": "Top", "B": "Bottom", "C": "Left"},
         "type": "Defect Localization", "annotation": True},
    ],
    "similar_templates": ["MVTec-AD/bottle/train/good/001.png", "MVTec-AD/bottle/train/good/002.png"],
    "random_templates": ["MVTec-AD/bottle/train/good/017.png", "MVTec-AD/bottle/train/good/042.png"],
}
KEY = "DS-MVTec/bottle/image/broken_large/000.png"
KNOWLEDGE = {"MVTec": {"bottle": {"good": " Normal\n Description: A clean bottle.",
                                  "broken_large": " Broken large\n Description: A large crack."}}}


@pytest.fixture
def mmad_root(tmp_path: Path) -> Path:
    (tmp_path / "mmad.json").write_text(json.dumps({KEY: ENTRY}))
    (tmp_path / "domain_knowledge.json").write_text(json.dumps(KNOWLEDGE))
    return tmp_path


# --- the scripts, transcribed --------------------------------------------------------------------

def mmad_parse_conversation(text_gt: dict) -> list[dict]:
    questions = []
    for i, qa in enumerate(text_gt["conversation"]):
        options_text = ""
        for new_key, (_, value) in enumerate(list(qa["Options"].items())):
            options_text += f"{chr(65 + new_key)}. {value}\n"
        questions.append({"type": "text", "text": f"Question {i + 1}: {qa['Question']} \n" f"{options_text}"})
    return questions


def minicpm_queries(text_gt: dict, few_shot: list[str], domain_knowledge: str | None,
                    responses: list[str] | None) -> list[list]:
    """MiniCPMQuery.generate_answer's msgs content, question by question (responses: --record_history)."""
    contents, history = [], ""
    for i, question in enumerate(mmad_parse_conversation(text_gt)):
        incontext = ""
        if domain_knowledge:
            incontext = incontext + f"Following is the domain knowledge which contains some type of defect and the normal object characteristics: \n {domain_knowledge}"
        if few_shot:
            if len(few_shot) == 1:
                incontext = incontext + "Image 1 is a normal sample, which can be used as a template to compare the image being queried."
            else:
                incontext = incontext + f"Image 1-{len(few_shot)} are {len(few_shot)} normal samples, which can be used as a template to compare the image being queried."
        payload = MMAD_INSTRUCTION + incontext + '\n' + \
            "The last image is the query image: " + "Following is the question list. Answer with the option's letter from the given choices directly: " + '\n'
        conversation_text = f"{question['text']}" + '\n'
        query = payload + history + conversation_text
        contents.append([*few_shot, "QUERY", query])
        if responses is not None:
            history = history + conversation_text + '\n' + responses[i] + '\n'
    return contents


def qwen25_queries(text_gt: dict, few_shot: list[str], domain_knowledge: str | None) -> list[list]:
    """qwen2_5_vl_query.py's content parts (parse_conversation with add_question_id=False)."""
    contents = []
    for qa in text_gt["conversation"]:
        options_text = "".join(f"{chr(65 + k)}. {v}\n" for k, (_, v) in enumerate(qa["Options"].items()))
        incontext = []
        if domain_knowledge:
            incontext.append(f"Following is the domain knowledge which contains some type of defect and the normal object characteristics: \n {domain_knowledge}")
        if few_shot:
            incontext.append(f"Following is/are {len(few_shot)} image of normal sample, which can be used as a template to compare the image being queried.")
        incontext += few_shot
        contents.append([MMAD_INSTRUCTION, "Answer with the option's letter from the given choices directly! ", *incontext,
                         "Following is the query image: ", "QUERY", "Following is the question list: ",
                         f"{qa['Question']} \n{options_text}"])
    return contents


def eiad_queries(text_gt: dict) -> list[list]:
    """EIAD's eval/evaluation.py: msgs content [image, prompt]."""
    contents = []
    for query in text_gt["conversation"]:
        options = "\n"
        for k, v in query["Options"].items():
            options += k + ". " + v + "\n"
        contents.append(["QUERY", query["Question"] + options + "Answer with the option's letter from the given choices directly."])
    return contents


# --- eiad against them ---------------------------------------------------------------------------

def _ours(mmad_root: Path, protocol: str, templates: int = 1, wording: str = "minicpm", knowledge: bool = False,
          responses: list[str] | None = None) -> list[list]:
    questions = load_benchmark(mmad_root)
    texts = load_domain_knowledge(mmad_root, questions) if knowledge else None
    asking = Asking(PROTOCOLS[protocol], "random", templates, wording, responses is not None, texts)
    contents, history = [], ""
    for number, question in enumerate(questions):
        parts = plan(question, asking, history)
        contents.append(["QUERY" if part == ImageRef(KEY) else part.path if isinstance(part, ImageRef) else part
                         for part in parts])
        if responses is not None:
            history += history_entry(question, responses[number])
    return contents


@pytest.mark.parametrize("knowledge", [False, True], ids=["plain", "domain-knowledge"])
@pytest.mark.parametrize("templates", [1, 2])
def test_mmad_one_shot_is_mmads_text_to_the_character(mmad_root, knowledge, templates):
    text = "\n".join(KNOWLEDGE["MVTec"]["bottle"].values()) if knowledge else None
    expected = minicpm_queries(ENTRY, ENTRY["random_templates"][:templates], text, None)
    assert _ours(mmad_root, "mmad-1shot", templates, knowledge=knowledge) == expected
    third = expected[2][-1]
    assert "Question 3: Where is the defect? \nA. Top\nB. Bottom\nC. Left\n\n" in third  # numbered by position


def test_mmad_with_history_carries_the_earlier_answers(mmad_root):
    responses = ["A", "The answer is C.", "B"]
    expected = minicpm_queries(ENTRY, ENTRY["random_templates"][:1], None, responses)
    ours = _ours(mmad_root, "mmad-1shot", responses=responses)
    assert ours == expected and "Question 1: " in ours[2][-1] and "The answer is C.\n" in ours[2][-1]


def test_mmad_zero_shot_keeps_the_instruction_without_templates(mmad_root):
    expected = minicpm_queries(ENTRY, [], None, None)
    assert _ours(mmad_root, "mmad-0shot") == expected
    assert _ours(mmad_root, "mmad-0shot", knowledge=True) == minicpm_queries(
        ENTRY, [], "\n".join(KNOWLEDGE["MVTec"]["bottle"].values()), None)


def test_qwen2_5_vl_wording_interleaves_text_and_images(mmad_root):
    text = "\n".join(KNOWLEDGE["MVTec"]["bottle"].values())
    assert _ours(mmad_root, "mmad-1shot", wording="qwen2_5_vl", knowledge=True) == qwen25_queries(
        ENTRY, ENTRY["random_templates"][:1], text)
    assert _ours(mmad_root, "mmad-0shot", wording="qwen2_5_vl") == qwen25_queries(ENTRY, [], None)


def test_eiad_zero_shot_is_eiads_text(mmad_root):
    assert _ours(mmad_root, "eiad-0shot") == eiad_queries(ENTRY)


def test_bad_protocol_settings_stop_before_any_model(mmad_root):
    with pytest.raises(ConfigError, match="no protocol 'mmad-5shot'; known"):
        config(EvalConfig, "evaluate", protocol="mmad-5shot")
    with pytest.raises(ConfigError, match="eiad-0shot .* has no domain knowledge or history"):
        config(EvalConfig, "evaluate", protocol="eiad-0shot", domain_knowledge=True)
    with pytest.raises(ConfigError, match="Qwen2.5-VL script has no answer history"):
        config(EvalConfig, "evaluate", protocol="mmad-1shot", wording="qwen2_5_vl", history=True)
    (mmad_root / "domain_knowledge.json").write_text(json.dumps({"MVTec": {"cable": {"good": "x"}}}))
    with pytest.raises(DataError, match=r"domain_knowledge.json: has no domain knowledge for \['MVTec/bottle'\]"):
        load_domain_knowledge(mmad_root, load_benchmark(mmad_root))
