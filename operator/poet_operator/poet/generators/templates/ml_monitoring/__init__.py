"""Templates of the ml_monitoring domain: feature_drift and model_agnostic_monitor."""
