"""The evaluation protocols' names, declared without importing anything.

The ``timm-selfcon`` console script (``timm_selfcon_cli.py``) answers ``--help`` without importing torch, so it reads
these names from this file's source instead of asking the registry (:mod:`.registry`), whose protocols import torch.
``tests/engine/evaluation/test_registry.py`` keeps this declaration in step with the registry.
"""

#: every registered protocol, in the order ``protocol=all`` runs them (the fast ones first, the papers' protocol last)
PROTOCOL_NAMES = ("linear_fast", "knn", "early_exit", "linear")
#: the protocols that train classifiers, in the order ``export`` picks one by default
CLASSIFIER_PROTOCOL_NAMES = ("linear", "early_exit", "linear_fast")
#: ``protocol=``'s default: the fast linear probe
DEFAULT_PROTOCOL = "linear_fast"
#: the ``protocol=`` value that runs every protocol that applies to the model
ALL = "all"
