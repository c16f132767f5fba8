"""Time-series forecasting: config, data, baselines, neural models, training, evaluation, export."""

from zoo.forecast.config import ForecastConfig  # noqa: F401
from zoo.forecast.data import Series, load_series  # noqa: F401
from zoo.forecast.model import NEURAL_MODELS, autoregressive_rollout  # noqa: F401
