"""A small part of FHIRPath, for mapping FHIR resources to parameters: `Appointment.start`,
`Patient.identifier.where(system='urn:oid:1.2.3').value`, `Appointment.appointmentType.coding.code`.
A path starts at the Appointment or its Patient; each step takes an element of every item (a
list's items are all kept), and `where(key='value')` keeps the items whose key has the value."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ROOTS = ("Appointment", "Patient")
_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9]*$")
_WHERE = re.compile(r"^where\(\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*'([^']*)'\s*\)$")
_STEP = re.compile(r"where\([^)]*\)|[^.]+")


@dataclass(frozen=True)
class Step:
    name: str | None = None  # an element
    where: tuple[str, str] | None = None  # or a filter: (key, value)


@dataclass(frozen=True)
class FhirPath:
    root: str  # Appointment | Patient
    steps: tuple[Step, ...]
    text: str

    def __str__(self) -> str:
        return self.text

    def evaluate(self, resource: dict[str, Any] | None) -> list[Any]:
        """Every value the path reaches in `resource` (the root's resource), in order."""
        items: list[Any] = [resource] if resource is not None else []
        for step in self.steps:
            out: list[Any] = []
            for item in items:
                if not isinstance(item, dict):
                    continue
                if step.where is not None:
                    key, value = step.where
                    if str(item.get(key, "")) == value:
                        out.append(item)
                    continue
                found = item.get(step.name or "")
                if isinstance(found, list):
                    out.extend(found)
                elif found is not None:
                    out.append(found)
            items = out
        return items


def parse_path(text: str) -> FhirPath | None:
    """`Patient.name` -> FhirPath; None when it is not a path this subset reads."""
    if not isinstance(text, str):
        return None
    parts = _STEP.findall(text.strip())
    if not parts or "".join(p + "." for p in parts)[:-1] != text.strip() or parts[0] not in ROOTS:
        return None
    steps: list[Step] = []
    for part in parts[1:]:
        m = _WHERE.match(part)
        if m is not None:
            steps.append(Step(where=(m.group(1), m.group(2))))
        elif _NAME.match(part):
            steps.append(Step(name=part))
        else:
            return None
    return FhirPath(parts[0], tuple(steps), text.strip())
