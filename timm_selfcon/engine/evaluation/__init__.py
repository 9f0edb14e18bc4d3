"""The evaluation protocols behind :func:`timm_selfcon.engine.evaluate.evaluate`, one module each.

- :mod:`.features`: the frozen encoder's pooled features per output (shared with :mod:`..probe`) and the inputs
  every protocol reads (:class:`.features.EvalInputs`);
- :mod:`.metrics`: top-k accuracy of each head and of the ensemble;
- :mod:`.classifiers`: linear classifiers trained on frozen features, epoch selection, their names in the model;
- :mod:`.linear`, :mod:`.linear_fast`, :mod:`.knn`, :mod:`.early_exit`: the protocols, each a ``run(inputs, report)``
  registered with its declaration (:func:`.registry.register_protocol`);
- :mod:`.registry`: the protocols by name (:data:`.registry.PROTOCOLS`), ``protocol=all``'s order, ``export``'s choice;
- :mod:`.names`: the same names without any import (for the torch-free ``--help``);
- :mod:`.report`: the typed report (:class:`.report.EvalReport`), ``report.json``, ``classifiers.safetensors`` and
  ``plot.png``.

``engine/evaluate.py`` holds the configuration and the choice of data. A new protocol is a new module here: the
registry imports every module of this package the first time it is asked, so each registers itself. This package
itself imports nothing, so :mod:`.names` stays light.
"""
