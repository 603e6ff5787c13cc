"""Evaluation harnesses: detectors, abstention, retrieval and answer quality on public data sets."""
