"""A byte-level language model on the standard library's own source: ``python -m examples.lm``.

``data.py`` (the corpus, split by file), ``model.py`` (a small decoder-only
transformer in Flax NNX), ``configs.py`` (a run's settings), ``optim.py``
(AdamW with masked weight decay and the compared step sizes), ``train.py``
(one run with checkpoints, and many runs in one program), ``compare.py``
(tuning and comparison), ``branch.py`` (cooldowns branched from orbax
checkpoints) and ``main.py`` (the command line).
"""
