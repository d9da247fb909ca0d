"""Journey definitions: the model, loading YAML/JSON with line-numbered problems, and validation."""

from journeys.definitions.loader import definition_from_stored, load_definition_file, load_definition_text
from journeys.definitions.model import Flow, JourneyDefinition, Parameter
from journeys.definitions.problems import DefinitionError, Problem
from journeys.definitions.validator import validate_graph

__all__ = [
    "DefinitionError",
    "Flow",
    "JourneyDefinition",
    "Parameter",
    "Problem",
    "definition_from_stored",
    "load_definition_file",
    "load_definition_text",
    "validate_graph",
]
