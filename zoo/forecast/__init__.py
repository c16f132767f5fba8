"""Time-series forecasting: data, baselines, neural models, training, export."""

from zoo.forecast.data import ForecastConfig, Series, load_series  # noqa: F401
from zoo.forecast.models import NEURAL_MODELS, autoregressive_rollout  # noqa: F401
