"""The evaluation protocols behind :func:`timm_selfcon.engine.evaluate.evaluate`, one module each.

- :mod:`.features`: the frozen encoder's pooled features per output (shared with :mod:`..probe`) and the inputs
  every protocol reads (:class:`.features.EvalInputs`);
- :mod:`.metrics`: top-k accuracy of each head and of the ensemble;
- :mod:`.classifiers`: linear classifiers trained on frozen features, epoch selection, their names in the model;
- :mod:`.linear`, :mod:`.linear_fast`, :mod:`.knn`, :mod:`.early_exit`: the protocols, each a ``run(inputs, report)``;
- :mod:`.report`: ``report.json``, ``classifiers.safetensors`` and ``plot.png``.

``engine/evaluate.py`` holds the configuration, the choice of data and the table of protocols.
"""
