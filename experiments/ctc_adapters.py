r"""Multilingual CTC on a frozen pretrained encoder with per-language adapters (MMS recipe).

  python -m mlasr.train --config experiments/ctc_adapters.py:root=D,init_from=W/hubert_it2,\
mode=adapters,tokenizer=char_per_lang --workdir W/adapters_1h

mode:
  adapters     encoder frozen; per-language adapters (bottleneck `bottleneck`) after every block
               + CTC head(s) train. The MMS setting.
  shared_head  encoder frozen, no adapters: only the CTC head trains (a linear probe).
  full         everything but the front end fine-tunes (transformer frozen for `freeze_steps`),
               exactly experiments/ctc_finetune.py.
tokenizer:
  char_per_lang  a character vocabulary and a CTC head per language (MMS)
  sentencepiece  one shared SentencePiece vocabulary (`vocab` pieces) and head, each language's
                 logits masked to the pieces its characters can form
  char           one shared character vocabulary and head

Adding a language to a trained model (its other languages stay bit-identical):
  python -m mlasr.train --config experiments/ctc_adapters.py:root=D,sources=commonvoice:xx,\
add_to=W/adapters_1h --workdir W/adapters_1h_plus_xx
`add_to` loads every parameter of that run (config.init_scope="all"), reuses its tokenizer
(a per-language vocabulary gets a table for the new language) and trains only the new
languages' adapters and heads (adapters.freeze_all_but).
"""
from mlasr import config_lib
from mlasr.data import inputs, pipeline
from mlasr.models import adapters


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, root="~/mlasr_data/paper",
                             sources=config_lib.BENCHMARK_SOURCES, split="train_1h",
                             init_from="", add_to="", steps=1500, layers=6, lr=2e-3,
                             freeze_steps=150, mode="adapters", tokenizer="char_per_lang",
                             vocab=256, bottleneck=16)
  config = config_lib.finetune_config(
      root=arg.root, sources=arg.sources, split=arg.split, init_from=arg.init_from,
      steps=arg.steps, layers=arg.layers, lr=arg.lr, freeze_steps=arg.freeze_steps)
  if arg.tokenizer == "char_per_lang":
    config.tokenizer.kind, config.tokenizer.per_language = "char", True
    config.model.head = "per_language"
  elif arg.tokenizer in ("char", "sentencepiece"):
    config.tokenizer.kind, config.tokenizer.vocab_size = arg.tokenizer, arg.vocab
  else:
    raise ValueError(f"tokenizer={arg.tokenizer!r}: use char_per_lang, sentencepiece or char")
  config.model.output_mask = True
  if arg.mode == "adapters":
    config.model.adapters = dict(bottleneck=arg.bottleneck, blocks=None)
  elif arg.mode not in ("shared_head", "full"):
    raise ValueError(f"mode={arg.mode!r}: use adapters, shared_head or full")
  if arg.mode != "full":
    # Frozen for good: no optimizer state, exactly zero updates (optim.freeze).
    config.optim.freeze = (("encoder/.*", -1),)
  if arg.add_to:
    new_langs = pipeline.source_languages(inputs.datasets(config.data))
    base = config_lib.load_config(arg.add_to)
    base_langs = inputs.languages(base.data)
    config.data.langs = tuple(base_langs + [l for l in new_langs if l not in base_langs])
    config.init_from, config.init_scope = arg.add_to, "all"
    config.tokenizer.from_dir = f"{arg.add_to}/tokenizer"
    config.model.head = base.model.head
    config.model.adapters = dict(base.model.adapters)
    config.optim.freeze = adapters.freeze_all_but(new_langs)
  return config
