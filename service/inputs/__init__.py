"""Turning what a client sends into 28x28 digits: image decoding, normalisation, JSON parsing.

Pure functions that raise domain errors only (``service.errors``); nothing here knows HTTP.
"""
