"""Representation pretraining on demonstration data, without rewards: one module per method; policies load
what these write."""
