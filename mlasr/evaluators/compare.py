r"""One table of every decoder evaluated on a run: greedy and LM rows side by side.

  python -m mlasr.evaluators.compare --workdir RUN [--split test]

Reads each `<RUN>/eval_<split>*/results.json` that `mlasr.evaluate` wrote (one per decoder:
greedy, beam, beam_lm with a char or word LM; with the true or an identified language) and writes `<RUN>/compare_<split>.md` and
`.json`: one row per (speaker group, decoder), per-language CER and the macro average with its
95% bootstrap CI. The numbers are copied from the results files, never recomputed.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

from mlasr import fileio
from mlasr.evaluators import report

_GROUP_NAMES = {"seen": "seen voices", "unseen": "unseen voices", "all": "all"}


def decoder_name(meta: Mapping[str, Any]) -> str:
  """"greedy", "beam 8", "beam 8 + char LM", with "unrestricted outputs" / "language
  identified" appended where the run was not decoded over the true language's outputs."""
  decoder = meta.get("decoder", "greedy")
  if decoder == "beam_lm":
    name = f"beam {meta['beam']} + {meta['lm_kind']} LM"
  else:
    name = f"beam {meta['beam']}" if decoder == "beam" else "greedy"
  if meta.get("restrict_output") is False:
    name += ", unrestricted outputs"
  if meta.get("adapter_lang") == "auto":
    name += ", language identified"
  return name


def collect(workdir: str, split: str = "test") -> list[tuple[str, dict[str, Any]]]:
  """(decoder name, results) of every evaluation of `split` in `workdir`, greedy first."""
  found = []
  for path in fileio.glob(workdir, f"eval_{split}*/{report.RESULTS_JSON}"):
    suffix = os.path.basename(os.path.dirname(path))[len(f"eval_{split}"):]
    if suffix and not suffix.startswith("_"):
      continue  # eval_test2/ is another split's folder, not a decoder of this one
    results = report.read_results(path)
    if results.get("meta", {}).get("adapter_lang", "oracle") not in ("oracle", "auto", None):
      continue  # one language forced on every utterance: not a decoder of this test set
    found.append((decoder_name(results.get("meta", {})), results))
  if not found:
    raise FileNotFoundError(f"no {report.RESULTS_JSON} under {workdir}/eval_{split}*; run "
                            "mlasr.evaluate first")
  return sorted(found, key=lambda x: (x[0] != "greedy", x[0]))


def rows(evaluations: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
  """One row per (speaker group, decoder): CER per language, macro CER and its CI."""
  out = []
  groups = ["all"]
  for _, results in evaluations:
    groups += [g for g in results.get("by_group", {}) if g not in groups]
  for group in sorted(groups, key=lambda g: (g == "all", g)):
    for name, results in evaluations:
      r = results if group == "all" else results.get("by_group", {}).get(group)
      if r is None:
        continue
      out.append(dict(group=group, decoder=name,
                      cer={l: v["cer"]["rate"] for l, v in r["languages"].items()},
                      macro=r["macro"]["cer"]["rate"], macro_ci=r["macro"]["cer"]["ci"],
                      utts=r["macro"]["utts"]))
  return out


def to_markdown(table: Sequence[Mapping[str, Any]]) -> str:
  langs = sorted({l for r in table for l in r["cer"]})
  lines = ["| speakers | decoder | " + " | ".join(langs) + " | **macro** |",
           "|---|---|" + "---:|" * len(langs) + "---|"]
  for r in table:
    pct, ci = report._pct, report._ci  # pylint: disable=protected-access
    cells = [pct(r["cer"].get(l)) for l in langs]
    lines.append(f"| {_GROUP_NAMES.get(r['group'], r['group'])} | {r['decoder']} | "
                 + " | ".join(cells) + f" | **{pct(r['macro'])}** {ci(r['macro_ci'])} |")
  return "\n".join(lines + ["", "Test CER (%) per language; macro = unweighted mean over "
                            "languages with its 95% bootstrap CI."]) + "\n"


def write(workdir: str, split: str = "test") -> str:
  table = rows(collect(workdir, split))
  markdown = to_markdown(table)
  base = fileio.join(workdir, f"compare_{split}")
  with fileio.open(base + ".json", "w", encoding="utf-8") as fh:
    json.dump(table, fh, indent=1)
  with fileio.open(base + ".md", "w", encoding="utf-8") as fh:
    fh.write(markdown)
  return markdown


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  print(write(flags.FLAGS.workdir, flags.FLAGS.split), end="")


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "Run whose eval_<split>*/ folders are compared.")
  flags.DEFINE_string("split", "test", "Evaluated split.")
  flags.mark_flag_as_required("workdir")
  app.run(main)
