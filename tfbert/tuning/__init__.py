"""Hyperparameter search over training runs of any task with KerasTuner.

    config = TuneRunConfig(train_file="train.csv", max_trials=10, objective="val_macro_f1")
    result = run_search(config)        # writes <output_dir>/results.csv, best_hparams.yaml, best_model/
    result["best_value"], result["best_hparams"]

Modules, each depending only on those listed before it: `space` (the search space), `settings` (the
search config and its objective), `oracles`, `hypermodel` (a trial as a training run), `progress`,
`reporting` (results files and TensorBoard), `tuner`, `distributed` (chief and workers) and `search`
(`run_search`, the driver).
"""

from tfbert.tuning.distributed import configure_distribution, free_port, serve_oracle
from tfbert.tuning.hypermodel import BertHyperModel, FailOnNaN, trial_metrics
from tfbert.tuning.oracles import (BayesianOptimizationOracle, GridSearchOracle, HyperbandOracle, RandomSearchOracle,
                                   make_oracle, planned_trials)
from tfbert.tuning.progress import Progress
from tfbert.tuning.reporting import trial_rows, write_results, write_search_summary, write_trial_summary
from tfbert.tuning.search import run_search
from tfbert.tuning.settings import (DEFAULT_DATA_MAX_SEQ_LENGTH, DEFAULT_DATA_MAX_TRAIN_EXAMPLES, EXPORTS, ROLES,
                                    TUNERS, SearchError, SearchSettings, TuneNerRunConfig, TuneQaRunConfig, TuneRunConfig,
                                    parse_address, resolved_objective, search_config_for, validation_metric_names)
from tfbert.tuning.space import DEFAULT_SEARCH_SPACE, TUNABLE_FIELDS, ParamSpec, load_search_space, parse_search_space
from tfbert.tuning.tuner import BertTuner

__all__ = [
    # settings
    "SearchError", "SearchSettings", "TuneRunConfig", "TuneNerRunConfig", "TuneQaRunConfig", "search_config_for", "parse_address",
    "validation_metric_names", "resolved_objective", "TUNERS", "EXPORTS", "ROLES",
    "DEFAULT_DATA_MAX_TRAIN_EXAMPLES", "DEFAULT_DATA_MAX_SEQ_LENGTH",
    # space
    "ParamSpec", "parse_search_space", "load_search_space", "TUNABLE_FIELDS", "DEFAULT_SEARCH_SPACE",
    # oracles
    "RandomSearchOracle", "BayesianOptimizationOracle", "HyperbandOracle", "GridSearchOracle", "make_oracle",
    "planned_trials",
    # hypermodel, tuner, progress, reporting
    "FailOnNaN", "BertHyperModel", "trial_metrics", "BertTuner", "Progress", "write_trial_summary",
    "write_search_summary", "trial_rows", "write_results",
    # distributed search and the driver
    "configure_distribution", "serve_oracle", "free_port", "run_search",
]
