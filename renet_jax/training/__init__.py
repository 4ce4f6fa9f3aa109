"""Training a model: what each problem brings to the loop (`tasks`), the loop itself
(`train`: steps, resume, early stopping from `early_stopping`), the config checks made
before anything is read (`config_checks`), optimisers (`optim`), checkpoints and the
released parameters (`checkpoints`), the workdir's lock and resume rules (`workdir`),
and what a run reports while it trains (`logs`)."""
