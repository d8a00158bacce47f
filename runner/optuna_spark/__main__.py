import sys

from optuna_spark.cli import main

sys.exit(main())
