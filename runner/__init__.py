"""optuna-spark runner: submit Optuna studies to Spark and read them back."""

__version__ = "0.1.0"
