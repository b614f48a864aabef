"""Language-identification evaluation: accuracy, per-language recall, the confusion matrix.

    true, pred, speakers = classify(predict_fn, eval_data)   # over every real utterance
    result = scores(true, pred, langs)                       # accuracy, per_language, confusion
    print(confusion_markdown(result))

`dev_metrics` is what the LID task reports on dev during training; mlasr.evaluate scores a
whole split with it (lid.json, lid.md) and, for `--adapter_lang=auto`, the LID model that
chose each utterance's adapter.
"""
from __future__ import annotations

import json

import jax
import numpy as np

from mlasr import fileio


def classify(predict_fn, eval_data) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str, str]]]:
  """(true lang ids, predicted lang ids, (corpus, lang, speaker) of each) over every real
  utterance of `eval_data`; `predict_fn(host batch) -> (lang ids [B], ...)`."""
  true, pred, speakers = [], [], []
  for batch in eval_data.batches():
    ids, _ = jax.device_get(predict_fn(batch))
    real = np.flatnonzero(batch["example_mask"])
    true.extend(batch["lang_id"][real])
    pred.extend(ids[real])
    speakers.extend(zip(batch["corpus"][real], batch["lang"][real], batch["speaker"][real]))
  return np.asarray(true, np.int64), np.asarray(pred, np.int64), speakers


def scores(true: np.ndarray, pred: np.ndarray, langs) -> dict:
  """Accuracy, per-language recall and the confusion matrix (rows: true, columns: predicted)."""
  confusion = np.zeros([len(langs), len(langs)], np.int64)
  np.add.at(confusion, (true, pred), 1)
  per_lang = {l: float(confusion[i, i] / max(confusion[i].sum(), 1)) for i, l in enumerate(langs)}
  return dict(accuracy=float(np.mean(true == pred)) if len(true) else float("nan"),
              per_language=per_lang, confusion=confusion.tolist(), langs=list(langs),
              num_utterances=int(len(true)))


def dev_metrics(predict_fn, eval_data) -> dict:
  """Dev accuracy overall and per language of `eval_data.langs`."""
  true, pred, _ = classify(predict_fn, eval_data)
  result = scores(true, pred, list(eval_data.langs))
  out = {"dev_lid/accuracy": result["accuracy"]}
  out.update({f"dev_lid/{l}": v for l, v in result["per_language"].items()})
  return out


def confusion_markdown(result: dict) -> str:
  langs = result["langs"]
  lines = [f"LID accuracy {100 * result['accuracy']:.1f}% over {result['num_utterances']} "
           "utterances (rows: true language, columns: predicted)", "",
           "| true \\ predicted | " + " | ".join(langs) + " | recall % |",
           "|---" * (len(langs) + 2) + "|"]
  for i, lang in enumerate(langs):
    lines.append(f"| {lang} | " + " | ".join(str(v) for v in result["confusion"][i]) +
                 f" | {100 * result['per_language'][lang]:.1f} |")
  if by_group := result.get("by_group"):
    lines += ["", "By speaker group: " + ", ".join(
        f"{g} {100 * r['accuracy']:.1f}% ({r['num_utterances']} utterances)"
        for g, r in sorted(by_group.items()))]
  return "\n".join(lines) + "\n"


def write(result: dict, out_dir: str) -> dict[str, str]:
  """lid.json and lid.md (the confusion Markdown) in `out_dir`; {name: path}."""
  fileio.makedirs(out_dir)
  paths = {name: fileio.join(out_dir, name) for name in ("lid.json", "lid.md")}
  with fileio.open(paths["lid.json"], "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  with fileio.open(paths["lid.md"], "w", encoding="utf-8") as f:
    f.write(confusion_markdown(result))
  return paths
