"""Churn: point-in-time customer features, honest labels, out-of-time evaluation, scoring."""
