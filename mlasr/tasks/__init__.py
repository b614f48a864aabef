"""Training tasks: one module per objective, chosen by `config.task` (ctc, hubert, lid).

mlasr.train and mlasr.evaluate use a task module only through these names:

- `setup(config, workdir) -> dict`, with the keys
    num_outputs:  size of the model's output layer (vocabulary, codebook, languages);
    tokenizer:    mlasr.data.tokenizer.Tokenizer that turns transcripts into `labels`, or None;
    label_store:  mlasr.targets.labels.LabelStore of frame-level pretraining targets, or None;
    model_kwargs: extra keyword arguments of the model's `build` (may be empty).
- `loss_fn(model, batch, train=True) -> (loss, metrics)`: the scalar loss, a mean over
  `metrics["loss_weight"]` units (label tokens, scored frames, utterances), and a dict of
  scalars; gradient accumulation (mlasr.steps) weights each micro-batch by that count.
- `eval_step(model, batch)`: jitted by mlasr.train on dev batches; returns what `evaluate`
  consumes.
- `evaluate(eval_fn, eval_data, task_setup) -> dict`: dev metrics over `eval_data`, computed by
  the task's evaluator in mlasr.evaluators (imported in each module as `evaluator`).
- `BEST_METRIC = (name, "min" | "max")`: the dev metric that picks `<workdir>/best`.
"""
