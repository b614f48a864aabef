"""Config helpers in the big_vision style: `get_config(arg)` in `experiments/<name>.py`.

`--config experiments/demo_ctc.py:root=/data/demo,steps=2000 --config.optim.lr=1e-3`
reaches `get_config("root=/data/demo,steps=2000")`; `parse_arg` turns that string into a
ConfigDict with types taken from the defaults.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import ml_collections

from mlasr import fileio, masking, sharding
from mlasr.data import augment, segment
from mlasr.models import hubert_pretrain
from mlasr.targets import bestrq


def parse_arg(arg: str | None, lazy: bool = False, **defaults) -> ml_collections.ConfigDict:
  """Parses "a=1,b=x,flag" into a ConfigDict typed like `defaults`.

  A bare key means True. Unknown keys are an error unless `lazy`, so a typo in a command
  line never silently falls back to a default.
  """
  out = ml_collections.ConfigDict(dict(defaults))
  if not arg:
    return out
  for item in arg.split(","):
    if not item:
      continue
    key, _, value = item.partition("=")
    if key not in defaults and not lazy:
      raise ValueError(f"Unknown config arg {key!r} in {arg!r}; known: {sorted(defaults)}")
    default = defaults.get(key)
    if not _:
      out[key] = True
    elif isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"Config arg {key}={value!r} must be true/false.")
      out[key] = value.lower() in ("true", "1")
    elif default is None or isinstance(default, str):
      out[key] = value
    else:
      out[key] = type(default)(value)
  return out


def save_config(config: ml_collections.ConfigDict, workdir: str, name: str = "config.json"):
  """Writes the resolved config next to the results; returns the path (local or gs://)."""
  fileio.makedirs(workdir)
  path = fileio.join(workdir, name)
  fileio.write_text(path, config.to_json_best_effort(indent=2, sort_keys=True))
  return path


def load_config(workdir: str, name: str = "config.json") -> ml_collections.ConfigDict:
  """The config a run saved, over base_config(its task): fields added to mlasr after the run
  was saved take their defaults, so old runs keep loading. Raises FileNotFoundError naming
  the folder when it is not a run (and the runs inside it, when it is a folder of runs)."""
  path = fileio.join(workdir, name)
  if not fileio.isfile(path):
    if not fileio.isdir(workdir):
      raise FileNotFoundError(f"{workdir}: no such run folder (--workdir of mlasr.train)")
    runs = sorted(d for d in fileio.listdir(workdir)
                  if fileio.isfile(fileio.join(workdir, d, name)))
    hint = (f"; runs inside it: {runs[:10]}" if runs else
            "; pass the --workdir that mlasr.train wrote (it saves config.json first)")
    raise FileNotFoundError(f"{workdir}: not an mlasr run, it has no {name}{hint}")
  saved = json.loads(fileio.read_text(path))
  task = saved.get("task", "ctc")
  if task not in _TASK_BLOCKS:
    raise ValueError(f"{path}: task={task!r} is unknown to this mlasr "
                     f"(known: {sorted(_TASK_BLOCKS)})")
  return ml_collections.ConfigDict(_merged(base_config(task).to_dict(), saved))


def _merged(defaults: dict, saved: dict) -> dict:
  """`saved` over `defaults`, nested dicts merged key by key (saved values win; keys only
  `saved` has, e.g. imported_from, are kept)."""
  out = dict(defaults)
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(out.get(key), dict):
      out[key] = _merged(out[key], value)
    else:
      out[key] = value
  return out


def enable_compilation_cache(path: str) -> None:
  """Turns on JAX's persistent compilation cache at `path` ("" leaves it off).

  Every process of one run (train, evaluate, lm --tune, robustness, curves) compiles the
  same predict program per bucket shape; with the cache the second process loads it from
  disk instead of spending ~15 s per shape in XLA on a small CPU. A cache the process was
  already given (JAX_COMPILATION_CACHE_DIR, a test harness) is kept.
  """
  import jax  # pylint: disable=import-outside-toplevel
  if not path or jax.config.jax_compilation_cache_dir:
    return
  jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def ensure_writable_dir(path: str, what: str = "--workdir") -> str:
  """Creates `path` if needed and checks a file can be written in it; returns it.

  Raises PermissionError naming `what`, the path and the OS reason, before any work is done
  (a read-only workdir otherwise fails at the first checkpoint or report write). A gs:// path
  is checked by writing and deleting a probe object (no bucket is ever created).
  """
  if fileio.is_remote(path):
    try:
      fileio.check_writable(path)
    except Exception as e:  # gcsfs: OSError (403), FileNotFoundError, HttpError, auth errors
      raise PermissionError(f"{what} {path} is not writable ({type(e).__name__}: {e}); "
                            f"check the bucket name and its permissions, or choose another "
                            f"{what}") from e
    return path
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise PermissionError(f"{what} {path} is not writable ({e.strerror or e}); choose a "
                          f"writable folder for {what}") from e
  return path


def base_config(task: str = "ctc") -> ml_collections.ConfigDict:
  """Every field a `task` run reads ("ctc" | "hubert" | "lid"), with its default, stated once.

  The fields all tasks share, then the task's own block (_TASK_BLOCKS). experiments/*.py start
  here and override what they change; code reads fields directly (config.model.head, never
  .get(key, default)), and load_config merges a saved run over this, so a run saved before a
  field existed loads with that field's default.
  """
  if task not in _TASK_BLOCKS:
    raise ValueError(f"config.task={task!r} is unknown; use one of {sorted(_TASK_BLOCKS)}")
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = task
  c.total_steps = 1000
  c.log_every = 25
  c.eval_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.compilation_cache = "~/.cache/mlasr/jax_cache"   # "" turns the persistent cache off
  c.init_from = ""                   # a run's workdir to start from (mlasr/models/surgery.py)
  c.init_scope = "encoder"           # "encoder" (pretrained encoder) | "all" (every match)
  # jax_default_prng_impl: "threefry" (JAX's default) | "unsafe_rbg" (cheaper dropout bits
  # on GPU/TPU, as MaxText) | "rbg". A run resumes only under the impl it was saved with.
  c.prng_impl = "threefry"
  c.accum_steps = 1                  # gradient accumulation: micro-batches per update
  c.max_nonfinite_steps = 20         # stop after this many NaN/inf updates in a row
  # Sharding (mlasr/sharding.py, docs/scaling.md): mesh axes and sizes (-1: the devices left),
  # and how parameters/activations map onto them: a preset, or explicit rules that replace it.
  c.mesh = sharding.DEFAULT_MESH
  c.sharding_preset = "dp"           # "dp" | "fsdp" | "fsdp_tp"
  c.logical_axis_rules = ()

  c.data = ml_collections.ConfigDict()
  c.data.root = ""                   # corpus root: <root>/commonvoice, <root>/voxpopuli
  c.data.data_dir = ""               # TFDS output; default <root>/tfds
  c.data.sources = ()                # ("commonvoice:en", "voxpopuli:cs", ...)
  c.data.train_split = "train"       # or train_10min / train_1h (ML-SUPERB subsets)
  # Common Voice: train on validated.tsv minus the dev/test speakers and sentences instead of
  # train.tsv (small languages; docs/real_corpora.md). Off by default.
  c.data.train_from_validated = False
  c.data.eval_split = "dev"
  c.data.alpha = 0.5                 # language sampling p_l ∝ n_l^alpha (XLS-R: 0.5)
  # Second level, within a language of several sources (commonvoice:fi + voxpopuli:fi):
  # q_{s|l} ∝ n_s^source_alpha (1 natural, 0 uniform over sources); one-source languages
  # are unaffected (mlasr/data/pipeline.py).
  c.data.source_alpha = 1.0
  c.data.max_seconds = 12.0          # longest training clip (see long_clips)
  # Training clips longer than the largest bucket: "drop" (CTC: a crop would cut its
  # transcript) or "crop" at random (pretraining and LID blocks).
  c.data.long_clips = "drop"
  c.data.batch_seconds = 120.0       # audio per batch; batch size varies by length bucket
  c.data.bucket_seconds = (2.0, 3.0, 4.0, 5.5, 7.5, 12.0)
  c.data.eval_batch_size = 32
  c.data.worker_count = 0
  c.data.prepare_workers = 2
  c.data.langs = ()                  # lang_id order; default: the languages of `sources`
  # Unlabeled sources (voxpopuli_unlabelled:<lang>, audio_dir:<lang>): how recordings are cut
  # into training segments (mlasr/data/segment.py): segment "fixed" | "vad_energy" |
  # "vad_silero", window_seconds, min_seconds, max_recording_seconds.
  c.data.unlabeled = dataclasses.asdict(segment.SegmentConfig())
  # Waveform augmentation of training batches (mlasr/data/augment.py: speed, noise, babble,
  # reverberation, channel), all off; defaults and meanings live in augment.AugmentConfig.
  c.data.augment = dataclasses.asdict(augment.AugmentConfig())

  c.model = ml_collections.ConfigDict()
  c.model.encoder = dict(preset="tiny")  # a preset of mlasr/models/encoder.py + overrides

  c.optim = ml_collections.ConfigDict()
  c.optim.schedule = "tri_stage"     # | "warmup_cosine" | "warmup_polynomial" | "constant"
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 0           # warmup_cosine, warmup_polynomial
  c.optim.phase_ratio = (0.1, 0.4, 0.5)  # tri_stage: warmup, hold, decay (fairseq)
  c.optim.final_lr_scale = 0.0       # warmup_cosine: end at lr * final_lr_scale
  c.optim.weight_decay = 0.01
  c.optim.clip_norm = 1.0            # 0: no clipping
  c.optim.b1 = 0.9
  c.optim.b2 = 0.98
  c.optim.eps = 1e-6
  # ((regex over parameter paths, updates frozen; -1 = always), ...) (mlasr/optim.py)
  c.optim.freeze = ()
  # Per-group learning rates (mlasr/optim.py), off: ((regex over parameter paths, multiplier
  # of lr), ...), first match wins, e.g. ((r"(?!encoder/).*", 10.0),) trains the new head at
  # 10x the encoder; and layer-wise decay: block i of L at lr * layer_decay^(L - i), the front
  # end at layer_decay^(L + 1), everything outside encoder/ at 1 (BEiT / data2vec).
  c.optim.lr_multipliers = ()
  c.optim.layer_decay = 1.0
  _TASK_BLOCKS[task](c)
  return c


def _ctc_block(c: ml_collections.ConfigDict) -> None:
  """CTC (mlasr/tasks/ctc.py): a tokenizer, a CTC head, optional per-language parts."""
  # Common Voice text-only corpora added to the tokenizer's training text, e.g.
  # ("validated_sentences",); prepare() writes them to <data_dir>/lm_text/ for mlasr.lm too.
  c.data.tokenizer_text = ()

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.kind = "char"          # "char" (one shared character set) or "sentencepiece"
  c.tokenizer.per_language = False   # char: one vocabulary per language instead of shared
  c.tokenizer.vocab_size = 256       # sentencepiece only
  c.tokenizer.alpha = 0.5            # sentencepiece: language balance of its training text
  c.tokenizer.from_dir = ""          # reuse a run's tokenizer (adding a language to a model)

  c.model.name = "ctc"
  c.model.final_dropout = 0.1
  # Per-language parts (mlasr/models/adapters.py), all selected per example by lang_id.
  c.model.adapters = dict(bottleneck=0, blocks=None)  # bottleneck > 0: MMS adapters
  c.model.head = "shared"            # "shared" | "per_language" (a CTC head per language)
  c.model.output_mask = False        # True: a language's logits only over its own outputs
  # What the CTC head reads (SUPERB / ML-SUPERB): -1 the encoder output, i block i's output
  # (0 = transformer input); layer_weights: a learned softmax-weighted sum of every layer.
  c.model.head_layer = -1
  c.model.layer_weights = False
  # Masking while fine-tuning (training only; mlasr/models/ctc.py), off: HuBERT fine-tunes
  # with time 0.75 / 10 frames and channel 0.5 / 64, experiments set what they use.
  c.model.finetune_masking = dict(dataclasses.asdict(masking.MaskingConfig()),
                                  mask_prob=0.0, mask_channel_prob=0.0)


def _hubert_block(c: ml_collections.ConfigDict) -> None:
  """HuBERT / BEST-RQ masked prediction (mlasr/tasks/hubert.py, models/hubert_pretrain.py)."""
  c.data.long_clips = "crop"         # random crops, hop-aligned with the labels
  c.model.name = "hubert_pretrain"
  c.model.targets = "labels"         # "labels" (k-means dumps in labels_dir) or "bestrq"
  c.model.labels_dir = ""
  c.model.label_rate = hubert_pretrain.DEFAULT_LABEL_RATE  # Hz of the dumped labels
  c.model.final_dim = 256            # projection the targets' embeddings live in
  c.model.logit_temp = 0.1
  c.model.untie_final_proj = False   # one projection per target set (iteration 2 with 2 sets)
  c.model.masking = dataclasses.asdict(masking.MaskingConfig())
  c.model.loss = dataclasses.asdict(hubert_pretrain.LossConfig())
  c.model.bestrq = dataclasses.asdict(bestrq.BestRQConfig())  # targets="bestrq" only


def _lid_block(c: ml_collections.ConfigDict) -> None:
  """Spoken language identification on a (frozen) encoder (mlasr/tasks/lid.py, models/lid.py)."""
  c.data.long_clips = "crop"
  c.model.name = "lid"
  c.model.layer = -1                 # encoder layer to classify from (-1: the last)
  c.model.layer_weights = False      # True: a learned softmax-weighted sum of every layer
  c.model.pooling = "stats"          # over frames: "stats" (mean and std) | "mean"
  c.model.final_dropout = 0.1
  c.model.train_encoder = False      # True: the encoder fine-tunes too (MMS LID)


_TASK_BLOCKS = {"ctc": _ctc_block, "hubert": _hubert_block, "lid": _lid_block}


# The 9 languages of the generated benchmark ("+"-separated: "," separates config args).
BENCHMARK_SOURCES = ("commonvoice:en+commonvoice:it+commonvoice:ca+commonvoice:ru+"
                     "commonvoice:hi+commonvoice:mr+commonvoice:te+voxpopuli:cs+voxpopuli:fi")


# Every parameter outside the pretrained encoder: the CTC head(s), adapters, layer weights.
NEW_PARAMS = r"(?!encoder/).*"


def finetune_config(*, root: str, sources: str, split: str, init_from: str, steps: int,
                    layers: int, lr: float, freeze_steps: int, task: str = "ctc",
                    head_lr_mult: float = 1.0, layer_decay: float = 1.0, head_layer: int = -1,
                    layer_weights: bool = False) -> ml_collections.ConfigDict:
  """Fine-tuning the tiny pre-LN encoder on a small labeled set: CTC
  (experiments/ctc_finetune.py, ctc_adapters.py) or LID (experiments/lid.py).

  HuBERT's fine-tuning recipe (fairseq examples/hubert/config/finetune): tri-stage LR, front
  end frozen throughout, transformer frozen for the first `freeze_steps` updates, and for CTC
  time masking (channel masking is available but off here: see the measurement below).
  Fine-tuning knobs (papers/hubert_lowres/README.md), all off by default: `head_lr_mult`
  multiplies the learning rate of every parameter outside the encoder (NEW_PARAMS),
  `layer_decay` < 1 is layer-wise learning-rate decay over the encoder, `head_layer` /
  `layer_weights` (CTC) put the head on one encoder layer or a learned weighted sum of all.
  """
  config = base_config(task)
  config.total_steps = steps
  config.eval_every = 0
  config.checkpoint_every = max(steps // 5, 1)
  config.init_from = init_from
  config.data.root = root
  config.data.sources = tuple(sources.split("+"))
  config.data.train_split = split
  config.data.bucket_seconds = (3.0, 4.5, 7.0, 12.0)
  config.data.batch_seconds = 60.0
  # Same encoder as experiments/hubert_pretrain.py (tiny, pre-LN) so init_from fits.
  config.model.encoder = dict(preset="tiny", num_layers=layers, layer_norm_first=True)
  if task == "ctc":
    # Light time masking only: with mask_prob 0.3 + channel masking 0.25 both inits sat on
    # the CTC blank plateau for 200+ of 500 steps at this scale (measured); HuBERT's 0.75 /
    # 0.5 is for a 95M-parameter encoder fine-tuned for 20k+ updates.
    config.model.finetune_masking.update(mask_prob=0.1, mask_length=5, mask_channel_prob=0.0,
                                         mask_channel_length=16)
  config.optim.schedule = "tri_stage"
  config.optim.lr = lr
  config.optim.freeze = ((("encoder/frontend/.*", -1), ("encoder/.*", freeze_steps))
                         if init_from else ())
  set_finetune_knobs(config, head_lr_mult=head_lr_mult, layer_decay=layer_decay,
                     head_layer=head_layer, layer_weights=layer_weights)
  return config


def set_finetune_knobs(config: ml_collections.ConfigDict, *, head_lr_mult: float = 1.0,
                       layer_decay: float = 1.0, head_layer: int = -1,
                       layer_weights: bool = False) -> None:
  """The fine-tuning knobs of experiments/ctc_finetune.py and ctc_hubert.py, in place: the
  learning rate of every parameter outside the encoder x `head_lr_mult`, layer-wise decay,
  and (CTC) the layer(s) the head reads. The defaults leave `config` as it is."""
  config.optim.lr_multipliers = ((NEW_PARAMS, float(head_lr_mult)),) if head_lr_mult != 1 else ()
  config.optim.layer_decay = float(layer_decay)
  if config.task == "ctc":
    config.model.head_layer = int(head_layer)
    config.model.layer_weights = bool(layer_weights)
  elif head_layer != -1 or layer_weights:
    raise ValueError(f"head_layer / layer_weights are CTC fields; task={config.task!r} has its "
                     "own (LID: config.model.layer, config.model.layer_weights)")
