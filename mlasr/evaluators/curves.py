r"""Learning curves: per-language dev CER at every checkpoint a run kept.

  python -m mlasr.train --config experiments/demo_ctc.py:root=D --workdir RUN \
      --config.checkpoint_every=250 --config.keep_checkpoints=8
  python -m mlasr.evaluators.curves --workdir RUN [--split dev]

Each checkpoint is decoded as the end-of-training dev evaluation decodes (best path over the
utterance's language's outputs, asr.dev_metrics), so the last point equals the run's own dev
numbers. Beside each point: the training loss around that step and the audio seen so far
(from metrics.jsonl). Writes <RUN>/curves_<split>/curves.json, curves.md and curves.png.
"""
from __future__ import annotations

import importlib
import json

import jax
from flax import nnx

from mlasr import checkpoint as ckpt_lib
from mlasr import evaluate, fileio, metrics_writer
from mlasr import sharding as sharding_lib
from mlasr.data import inputs
from mlasr.evaluators import asr


def train_log(workdir: str) -> list[dict]:
  """The training rows of metrics.jsonl (those with a loss), in step order."""
  path = fileio.join(workdir, metrics_writer.METRICS_FILE)
  if not fileio.isfile(path):
    return []
  rows = [json.loads(line) for line in fileio.read_text(path).splitlines() if line.strip()]
  return sorted((r for r in rows if "loss" in r), key=lambda r: r["step"])


def progress_at(rows: list[dict], step: int) -> dict:
  """Training loss of the last log row at or before `step` and the audio hours seen by then
  (each row reports its interval's rate: seconds = rate x steps / steps_per_second)."""
  seen, loss, previous = 0.0, None, 0
  for r in rows:
    if r["step"] > step:
      break
    steps = r["step"] - previous
    seen += r.get("audio_seconds_per_second", 0.0) * steps / max(r.get("steps_per_second",
                                                                         1e-9), 1e-9)
    loss, previous = r["loss"], r["step"]
  return dict(train_loss=loss, audio_hours=seen / 3600)


def run(workdir: str, split: str = "dev") -> dict:
  config, tokenizer, model, _ = evaluate.restore_model(workdir)
  if config.task != "ctc":
    raise ValueError(f"{workdir}: learning curves score CTC runs (this one is {config.task!r})")
  steps = ckpt_lib.all_steps(workdir)
  if not steps:
    raise FileNotFoundError(f"No checkpoint in {ckpt_lib.checkpoint_dir(workdir)}; train first.")
  eval_data = inputs.eval_data(config, split)
  task = importlib.import_module(f"mlasr.tasks.{config.task}")
  graphdef, _ = nnx.split(model)
  # One jitted function for every checkpoint: the parameters are an argument, so each
  # batch shape compiles once, not once per checkpoint.
  log_probs = jax.jit(lambda state, batch: task.log_probs(nnx.merge(graphdef, state), batch))
  batch_sharding = sharding_lib.batch_sharding(sharding_lib.make_mesh(config.mesh),
                                               sharding_lib.get_rules(config))
  rows = train_log(workdir)
  points = []
  for step in steps:
    ckpt_lib.assign_params(model, ckpt_lib.read_params(workdir, step))
    state = nnx.state(model)
    fn = lambda batch, state=state: log_probs(state, sharding_lib.to_device(batch,
                                                                            batch_sharding))
    metrics = asr.dev_metrics(fn, eval_data, tokenizer)
    cer = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("dev_cer/")}
    points.append(dict(step=step, cer=cer, **progress_at(rows, step)))
    print(f"step {step}: macro CER {100 * cer['macro']:.1f} %")
  result = dict(workdir=fileio.absolute(workdir), split=split, points=points)
  out_dir = fileio.join(workdir, f"curves_{split}")
  fileio.makedirs(out_dir)
  fileio.write_text(fileio.join(out_dir, "curves.json"), json.dumps(result, indent=1))
  fileio.write_text(fileio.join(out_dir, "curves.md"), to_markdown(result))
  plot(result, fileio.join(out_dir, "curves.png"))
  print(to_markdown(result), end="")
  return result


def to_markdown(result: dict) -> str:
  points = result["points"]
  langs = [l for l in points[0]["cer"] if l != "macro"]
  lines = ["| step | audio seen (h) | train loss | " + " | ".join(langs) +
           f" | **{result['split']} macro CER** |",
           "|---:|---:|---:|" + "---:|" * len(langs) + "---:|"]
  for p in points:
    loss = "" if p["train_loss"] is None else f"{p['train_loss']:.2f}"
    lines.append(f"| {p['step']} | {p['audio_hours']:.1f} | {loss} | " +
                 " | ".join(f"{100 * p['cer'][l]:.1f}" for l in langs) +
                 f" | **{100 * p['cer']['macro']:.1f}** |")
  return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> None:
  """CER (%) against step, one line per language, the macro average in black."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  points = result["points"]
  steps = [p["step"] for p in points]
  fig = Figure(figsize=(6.5, 4.0), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for lang in points[0]["cer"]:
    macro = lang == "macro"
    ax.plot(steps, [100 * p["cer"][lang] for p in points], marker="o", markersize=3,
            color="black" if macro else None, linewidth=2.5 if macro else 1.2,
            label=lang, zorder=3 if macro else 2)
  ax.set_xlabel("update")
  ax.set_ylabel(f"{result['split']} CER % (greedy)")
  ax.grid(alpha=0.3)
  ax.legend(ncol=2, fontsize=8)
  fig.tight_layout()
  with fileio.open(path, "wb") as f:  # a file object: `path` may be gs://
    fig.savefig(f, format="png")


def main(argv):
  del argv
  run(flags.FLAGS.workdir, flags.FLAGS.split)


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "Trained CTC run with several checkpoints.")
  flags.DEFINE_string("split", "dev", "Split to score at every checkpoint.")
  flags.mark_flag_as_required("workdir")
  app.run(main)
