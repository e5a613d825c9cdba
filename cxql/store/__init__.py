"""Concept stores: the on-disk format, builders and unit activations."""

from .concept_store import ConceptInfo, ConceptStore
from .layer import Layer
from .units import Threshold

__all__ = ["ConceptInfo", "ConceptStore", "Layer", "Threshold"]
