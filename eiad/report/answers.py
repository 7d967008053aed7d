"""The answers page: for each question type (MMAD) and task (DDQA), the questions the fine-tuned
model got wrong and those it got right where the base model did not, to browse in the page.

Each kind's rows go to a script of their own (``answers/<kind>.js``), loaded when the kind is
picked, so the page stays small at tens of thousands of questions; prompt lines shared by many
questions (an instruction) are stored once per kind. A script, not JSON: pages opened from disk
may load scripts but not fetch files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eiad.report.html import page

Thumb = Callable[[str, str], str]  # (where the image is: "benchmark" | "repo", its path) -> thumbnail's page path


@dataclass
class Kind:
    """The rows of one question type or task, with their prompt lines interned."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)

    def intern(self, text: str) -> list[int]:
        return [self.lines.setdefault(line, len(self.lines)) for line in text.split("\n")]

    def script(self) -> str:
        data = {"lines": list(self.lines), "rows": self.rows}
        return f"REPORT_DATA[{json.dumps(self.name)}] = {json.dumps(data, ensure_ascii=False)};\n"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def mmad_kinds(base: list[dict[str, Any]], tuned: list[dict[str, Any]], thumb: Thumb) -> dict[str, Kind]:
    kinds: dict[str, Kind] = {}
    for before, after in zip(base, tuned):
        right, was_right = after["gpt_answer"] == after["correct_answer"], before["gpt_answer"] == before["correct_answer"]
        if right and was_right:
            continue
        kind = kinds.setdefault(f"MMAD {after['question_type']}", Kind(f"MMAD {after['question_type']}"))
        images = [thumb("benchmark", part["image"]) for part in after["prompt"] if "image" in part]
        text = "\n".join(part.get("text", "[image]") for part in after["prompt"])
        kind.rows.append({"set": "gained" if right else "wrong", "dataset": after["image"].split("/")[0],
                          "status": after["parse"], "images": images, "prompt": kind.intern(text),
                          "output": after["model_output"], "parsed": after["gpt_answer"],
                          "truth": after["correct_answer"], "base": before["gpt_answer"]})
    return kinds


def ddqa_kinds(records: list[dict[str, Any]], base: list[dict[str, Any]], tuned: list[dict[str, Any]],
               thumb: Thumb) -> dict[str, Kind]:
    """Rows of the DDQA test split: predictions are written task by task in the records' order."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_task.setdefault(record["task"], []).append(record)
    ordered = [record for task in sorted(by_task) for record in by_task[task]]
    kinds: dict[str, Kind] = {}
    for record, before, after in zip(ordered, base, tuned):
        right, was_right = _right(after), _right(before)
        if right and was_right:
            continue
        name = f"DDQA {record['task']}"
        kind = kinds.setdefault(name, Kind(name))
        kind.rows.append({"set": "gained" if right else "wrong", "dataset": record["source_dataset"],
                          "status": "parsed" if after.get("parsed") not in (None, False) else "unparsed",
                          "images": [thumb("repo", path) for path in record["images"]],
                          "prompt": kind.intern(record["messages"][0]["content"].replace("<image>", "[image]\n")),
                          "output": after["output"], "parsed": str(after.get("parsed")), "truth": after["answer"],
                          "base": before["output"]})
    return kinds


def _right(row: dict[str, Any]) -> bool:
    return bool(row["correct"]) if "correct" in row else row["iou"] >= 0.5


SCRIPT = """
const REPORT_DATA = {};
const state = {kind: null, page: 0};
const size = 50;
function rows() {
  const data = REPORT_DATA[state.kind]; if (!data) return [];
  const want = document.getElementById('set').value, ds = document.getElementById('dataset').value,
        st = document.getElementById('status').value;
  return data.rows.filter(r => r.set === want && (!ds || r.dataset === ds) && (!st || r.status === st));
}
function text(row) { return row.prompt.map(i => REPORT_DATA[state.kind].lines[i]).join('\\n'); }
function show() {
  const list = rows(), out = document.getElementById('rows');
  out.textContent = '';
  document.getElementById('count').textContent = list.length + ' questions';
  for (const row of list.slice(state.page * size, (state.page + 1) * size)) {
    const div = document.createElement('div'); div.className = 'row'; div.dataset.row = '';
    const pics = document.createElement('div');
    for (const src of row.images) { const img = document.createElement('img'); img.src = src; img.loading = 'lazy';
      img.width = 128; pics.appendChild(img); }
    const body = document.createElement('div');
    const pre = document.createElement('pre'); pre.textContent = text(row);
    const facts = document.createElement('p');
    facts.textContent = `output: ${JSON.stringify(row.output)} - read as ${row.parsed} (${row.status}) - right: ` +
      `${row.truth} - base model: ${row.base} - ${row.dataset}`;
    body.appendChild(facts); body.appendChild(pre); div.appendChild(pics); div.appendChild(body); out.appendChild(div);
  }
  document.getElementById('pageno').textContent = `page ${state.page + 1} of ${Math.max(1, Math.ceil(list.length / size))}`;
}
function pick(kind, file) {
  state.kind = kind; state.page = 0;
  if (REPORT_DATA[kind]) { fill(); show(); return; }
  const script = document.createElement('script'); script.src = file;
  script.onload = () => { fill(); show(); }; document.head.appendChild(script);
}
function fill() {
  const select = document.getElementById('dataset'), keep = select.value;
  const names = [...new Set(REPORT_DATA[state.kind].rows.map(r => r.dataset))].sort();
  select.innerHTML = '<option value="">every dataset</option>' + names.map(n => `<option>${n}</option>`).join('');
  select.value = names.includes(keep) ? keep : '';
}
function turn(step) { state.page = Math.max(0, state.page + step); show(); }
"""


def answers_page(kinds: dict[str, Kind]) -> tuple[str, dict[str, str]]:
    """The page and its data scripts (``answers/<slug>.js`` -> content)."""
    scripts = {f"answers/{slug(name)}.js": kind.script() for name, kind in sorted(kinds.items())}
    choices = "".join(f'<option value="{slug(name)}">{name} ({len(kind.rows)})</option>'
                      for name, kind in sorted(kinds.items()))
    first = next(iter(sorted(kinds)), None)
    body = f"""
<p>Questions the fine-tuned model got wrong, or got right where the base model did not (a DFM box counts
as right at IoU 0.5 or more). Pick a kind; filter by dataset and by how the answer was read.</p>
<div class="controls">
<label>kind <select id="kind" onchange="pick(this.selectedOptions[0].text.replace(/ \\(\\d+\\)$/, ''),
  'answers/' + this.value + '.js')">{choices}</select></label>
<label>show <select id="set" onchange="state.page = 0; show()"><option value="wrong">wrong (fine-tuned)</option>
  <option value="gained">right, where the base model was wrong</option></select></label>
<label>dataset <select id="dataset" onchange="state.page = 0; show()"></select></label>
<label>read as <select id="status" onchange="state.page = 0; show()"><option value="">any way</option>
  <option>letter</option><option>fuzzy</option><option>unparsed</option><option>choice</option><option>parsed</option>
  </select></label>
<button onclick="turn(-1)">previous</button> <button onclick="turn(1)">next</button>
<span id="pageno"></span> <b id="count"></b></div>
<div id="rows"></div>
<script>{SCRIPT}</script>
"""
    if first is not None:
        body += f"<script>pick({json.dumps(first)}, 'answers/{slug(first)}.js');</script>"
    return page("Answers to browse", body), scripts


