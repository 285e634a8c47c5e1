"""CorrectNet: error suppression and compensation for networks on RRAM crossbars.

The application layer of the project: models, datasets, training (plain,
Lipschitz-regularized, variation-aware), digital error compensators, the RL
placement search, the results store, plots and the ``correctnet`` command.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
