"""Definitions: loading with line numbers, graph validation, templates, durations, schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from journeys.definitions import (
    DefinitionError,
    JourneyDefinition,
    Problem,
    definition_from_stored,
    load_definition_file,
    load_definition_text,
    validate_graph,
)
from journeys.definitions.model import parse_duration, split_duration
from journeys.definitions.schema import definition_json_schema, definition_json_schema_text
from journeys.definitions.templates import LocalDateTime, TemplateRenderError, render, template_variables

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "appointment-reminder.yaml"
CHICAGO = ZoneInfo("America/Chicago")

# Line numbers below refer to this text (line 1 is "name: Test").
BASE = """\
name: Test
parameters:
  - name: patientName
  - name: appointmentId
    identifier: true
  - name: when
    type: datetime
  - name: phone
    type: phone
    required: false
flows:
  - id: main
    name: Main
    main: true
    steps:
      - id: 10
        type: send_sms
        to: phone
        body: "Hi {{ patientName }}"
      - id: 20
        type: wait_until
        parameter: when
        before: 1d
      - id: 30
        type: end
  - id: sub
    name: Sub
    steps:
      - id: 40
        type: wait
        duration: 1h
        next: 30
"""


def problems_of(text: str, filename: str = "test.yaml") -> list[Problem]:
    with pytest.raises(DefinitionError) as info:
        load_definition_text(text, filename)
    return info.value.problems


def only_problem(text: str, filename: str = "test.yaml") -> Problem:
    problems = problems_of(text, filename)
    assert len(problems) == 1, problems
    return problems[0]


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# --- loading ---------------------------------------------------------------------------------


def test_example_loads() -> None:
    defn = load_definition_file(EXAMPLE)
    assert defn.name == "Appointment Reminder"
    assert defn.main_flow.id == "main"
    assert defn.subflow("rescheduled") is not None
    assert [p.name for p in defn.identifier_parameters] == ["appointmentId"]


def test_base_loads_and_round_trips_through_storage() -> None:
    defn = load_definition_text(BASE)
    assert validate_graph(defn) == []
    stored = json.loads(defn.model_dump_json())
    assert definition_from_stored(stored) == defn


def test_json_file_loads_with_lines(tmp_path: Path) -> None:
    data = load_definition_text(BASE).model_dump(mode="json", exclude_none=True)
    path = tmp_path / "journey.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    assert load_definition_file(path).name == "Test"
    data["flows"][0]["steps"][0]["colour"] = "red"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    with pytest.raises(DefinitionError) as info:
        load_definition_file(path)
    (problem,) = info.value.problems
    assert problem.path == "flows[0].steps[0].colour"
    assert problem.line is not None
    assert path.read_text().splitlines()[problem.line - 1].strip().startswith('"colour"')


def test_json_syntax_error() -> None:
    problem = only_problem('{\n  "name": "x",\n  "flows": [\n}\n', "bad.json")
    assert problem.line == 4
    assert problem.message.startswith("JSON syntax error")


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="cannot read file"):
        load_definition_file(tmp_path / "missing.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: Test\ndescription: caf\xe9\n")
    with pytest.raises(DefinitionError) as info:
        load_definition_file(path)
    assert info.value.problems[0].line == 2


def test_yaml_syntax_error_has_line() -> None:
    problem = only_problem(edit("    name: Sub\n", "   name: Sub\n"))
    assert problem.path == ""
    assert problem.line == 27
    assert problem.message.startswith("YAML syntax error")


def test_top_level_must_be_a_mapping() -> None:
    problem = only_problem("- a\n- b\n")
    assert problem.message.startswith("expected a mapping")
    assert only_problem("# just a comment\n").message == "the definition is empty"


def test_unknown_step_type() -> None:
    problem = only_problem(edit("type: end", "type: send_text"))
    assert problem.path == "flows[0].steps[2].type"
    assert problem.line == 25
    expected = (
        "unknown step type 'send_text' (expected one of: send_sms, send_email, http_request, wait, "
        "wait_until, wait_for_reply, branch, set_parameters, goto, end)"
    )
    assert problem.message == expected


def test_missing_field_reports_parent_line() -> None:
    problem = only_problem(edit('        body: "Hi {{ patientName }}"\n', ""))
    assert (problem.path, problem.line, problem.message) == ("flows[0].steps[0]", 16, "missing field 'body'")
    assert problem.format("j.yaml") == "j.yaml:16: flows[0].steps[0]: missing field 'body'"


def test_unknown_field() -> None:
    problem = only_problem(edit("        duration: 1h\n", "        duration: 1h\n        colour: red\n"))
    assert (problem.path, problem.line, problem.message) == ("flows[1].steps[0].colour", 32, "unknown field")


def test_unknown_field_suggests_a_close_name() -> None:
    problem = only_problem(edit("before: 1d", "befor: 1d"))
    assert problem.path == "flows[0].steps[1].befor"
    assert problem.message == "unknown field (did you mean 'before'?)"


def test_bad_values_are_described() -> None:
    problems = problems_of(edit("duration: 1h", "duration: 90").replace("type: datetime", "type: date"))
    assert [(p.path, p.line) for p in problems] == [
        ("parameters[2].type", 7),
        ("flows[1].steps[0].duration", 31),
    ]
    assert problems[0].message.startswith("unknown parameter type 'date' (expected one of: string, datetime")
    assert "needs a unit" in problems[1].message
    problem = only_problem(edit("duration: 1h", "duration: soon"))
    assert problem.message.startswith("'soon' is not a duration")


def test_unquoted_time_of_day_stays_text() -> None:
    defn = load_definition_text(edit("before: 1d\n", "before: 1d\n        at: 17:30\n"))
    step = defn.flows[0].steps[1]
    assert step.type == "wait_until" and step.at == "17:30"


def test_duplicate_yaml_key() -> None:
    problem = only_problem(edit("        to: phone\n", "        to: phone\n        to: phone\n"))
    assert (problem.path, problem.line) == ("flows[0].steps[0].to", 19)
    assert problem.message == "duplicate key 'to'"


def test_problems_format_and_error_str() -> None:
    assert Problem("bad", "flows[0]", 3).format("f.yaml") == "f.yaml:3: flows[0]: bad"
    assert Problem("bad", "", 3).format("f.yaml") == "f.yaml:3: bad"
    assert Problem("bad").format("f.yaml") == "f.yaml: bad"
    error = DefinitionError([Problem("a", "x", 1), Problem("b")], "f.yaml")
    assert str(error) == "f.yaml:1: x: a\nf.yaml: b"


# --- graph rules -----------------------------------------------------------------------------


def test_parameter_names_unique_case_insensitively() -> None:
    problem = only_problem(edit("  - name: when\n", "  - name: PATIENTNAME\n  - name: when\n"))
    assert (problem.path, problem.line) == ("parameters[2].name", 6)
    assert "duplicate parameter name 'PATIENTNAME'" in problem.message


def test_identifier_must_be_required() -> None:
    problem = only_problem(edit("    identifier: true\n", "    identifier: true\n    required: false\n"))
    assert (problem.path, problem.line) == ("parameters[1].required", 6)
    assert problem.message.startswith("identifier parameter 'appointmentId' must be required")


def test_flow_ids_unique() -> None:
    problem = only_problem(edit("  - id: sub\n", "  - id: main\n"))
    assert (problem.path, problem.line) == ("flows[1].id", 26)
    assert problem.message == "duplicate flow id 'main' (flows[0] has the same id)"


def test_only_one_main_flow() -> None:
    problem = only_problem(edit("    name: Sub\n", "    name: Sub\n    main: true\n"))
    assert (problem.path, problem.line) == ("flows[1].main", 28)
    assert problem.message.startswith("only one flow can be the main flow")


def test_step_ids_unique_across_flows() -> None:
    problem = only_problem(edit("      - id: 40\n", "      - id: 10\n"))
    assert (problem.path, problem.line) == ("flows[1].steps[0].id", 29)
    assert problem.message.startswith("duplicate step id 10 (flows[0].steps[0] has the same id")


def test_next_must_exist() -> None:
    problem = only_problem(edit("next: 30", "next: 99"))
    assert (problem.path, problem.line) == ("flows[1].steps[0].next", 32)
    assert problem.message == "no step with id 99"


def test_next_may_cross_flows_and_case_insensitive_to_is_fine() -> None:
    defn = load_definition_text(edit("to: phone", "to: PHONE"))
    assert defn.flows[1].steps[0].next == 30


def test_send_sms_to_must_be_a_phone_parameter() -> None:
    problem = only_problem(edit("to: phone", "to: PatientName"))
    assert (problem.path, problem.line) == ("flows[0].steps[0].to", 18)
    assert problem.message == "parameter 'patientName' is of type string, not phone"
    problem = only_problem(edit("to: phone", "to: mobile"))
    assert problem.message == "no parameter named 'mobile' (phone parameters: phone)"


def test_wait_until_parameter_must_be_datetime() -> None:
    problem = only_problem(edit("parameter: when", "parameter: appointmentId"))
    assert (problem.path, problem.line) == ("flows[0].steps[1].parameter", 22)
    assert problem.message == "parameter 'appointmentId' is of type string, not datetime"


def test_wait_until_before_and_after_not_both() -> None:
    problem = only_problem(edit("before: 1d\n", "before: 1d\n        after: 2h\n"))
    assert (problem.path, problem.line) == ("flows[0].steps[1].after", 24)
    assert problem.message == "set either 'before' or 'after', not both"


def test_template_syntax_error() -> None:
    problem = only_problem(edit("{{ patientName }}", "{{ patientName }"))
    assert (problem.path, problem.line) == ("flows[0].steps[0].body", 19)
    assert problem.message.startswith("template syntax error: ")


def test_template_unknown_filter_is_a_syntax_error() -> None:
    problem = only_problem(edit("{{ patientName }}", "{{ patientName | shout }}"))
    assert "No filter named 'shout'" in problem.message


def test_template_unknown_variable() -> None:
    problem = only_problem(edit("{{ patientName }}", "{{ doctor }}"))
    assert (problem.path, problem.line) == ("flows[0].steps[0].body", 19)
    assert problem.message.startswith("template uses unknown variable 'doctor'")


def test_template_variable_case_must_match() -> None:
    problem = only_problem(edit("{{ patientName }}", "{{ patientname }}"))
    assert "unknown variable 'patientname': did you mean 'patientName'?" in problem.message


def test_unreachable_step() -> None:
    end = "        type: end\n"
    problem = only_problem(edit(end, end + "      - id: 60\n" + end))
    assert (problem.path, problem.line) == ("flows[0].steps[3]", 26)
    assert problem.message == "step 60 is unreachable"


def test_step_after_next_is_unreachable_unless_targeted() -> None:
    text = BASE + "      - id: 50\n        type: end\n"
    assert only_problem(text).message == "step 50 is unreachable"
    assert load_definition_text(edit("next: 30\n", "next: 50\n", text))


def test_end_step_with_next() -> None:
    problem = only_problem(edit("        type: end\n", "        type: end\n        next: 10\n"))
    assert (problem.path, problem.line) == ("flows[0].steps[2].next", 26)


def test_loop_without_wait() -> None:
    body = '        body: "Hi {{ patientName }}"\n'
    text = edit(body, body + "        next: 15\n")
    extra = "      - id: 15\n        type: send_sms\n        to: phone\n        body: again\n"
    extra += "        next: 10\n"
    text = edit("      - id: 20\n", extra + "      - id: 20\n", text)
    problems = problems_of(text)
    loop = [p for p in problems if "loop" in p.message]
    assert [(p.path, p.line) for p in loop] == [("flows[0].steps[0]", 16)]
    assert loop[0].message.startswith("steps 10 -> 15 -> 10 form a loop with no wait or wait_until step")


def test_loop_through_a_wait_is_fine() -> None:
    again = "        type: send_sms\n        to: phone\n        body: x\n        next: 20\n"
    assert load_definition_text(edit("        type: end\n", again))


def test_self_loop_without_wait() -> None:
    body = '        body: "Hi {{ patientName }}"\n'
    problems = problems_of(edit(body, body + "        next: 10\n"))
    assert any(p.message.startswith("steps 10 -> 10 form a loop") for p in problems)


def test_falling_off_the_end_is_fine() -> None:
    text = edit("      - id: 30\n        type: end\n", "").replace("next: 30", "next: 20")
    assert load_definition_text(text).flows[0].steps[-1].id == 20


def test_validate_graph_gives_paths_without_lines() -> None:
    defn = JourneyDefinition.model_validate(
        {
            "name": "x",
            "flows": [
                {"id": "m", "name": "M", "steps": [{"id": 1, "type": "wait", "duration": "1m", "next": 7}]}
            ],
        }
    )
    assert validate_graph(defn) == [Problem("no step with id 7", "flows[0].steps[0].next", None)]


# --- templates -------------------------------------------------------------------------------

TYPES = {"patientName": "string", "when": "datetime", "phone": "phone"}


def test_render_datetime_default_and_date_filter() -> None:
    source = "{{ patientName }}: {{ when }} / {{ when | date }} / {{ when | date('%b %-d, %-I:%M%p') }}"
    out = render(source, {"patientName": "Ann", "when": "2023-12-01 08:00:00"}, TYPES, CHICAGO)
    assert out == "Ann: Friday, December 1, 2023 at 8:00 AM / Friday, December 1 at 8:00 AM / Dec 1, 8:00AM"
    absolute = render("{{ when }}", {"when": "2023-12-01T14:00:00Z"}, TYPES, CHICAGO)
    assert absolute == "Friday, December 1, 2023 at 8:00 AM"


def test_local_datetime() -> None:
    value = LocalDateTime.from_datetime(datetime(2024, 7, 4, 22, 5, tzinfo=UTC), CHICAGO)
    assert str(value) == "Thursday, July 4, 2024 at 5:05 PM"
    assert value.utcoffset() == timedelta(hours=-5)


def test_render_missing_optional_and_unparsable_values() -> None:
    assert render("[{{ phone }}][{{ when | date }}]", {}, TYPES, CHICAGO) == "[][]"
    assert render("{{ when }}", {"when": "soon"}, TYPES, CHICAGO) == "soon"


def test_template_variables() -> None:
    assert template_variables("{{ a }}{% for x in range(2) %}{{ x }}{{ b | date }}{% endfor %}") == {"a", "b"}


@pytest.mark.parametrize(
    "source",
    [
        "{{ undeclared }}",
        "{{ patientName.missing }}",
        "{{ {}[patientName] }}",
        "{{ patientName.__class__ }}",
        "{{ patientName + 1 }}",
        "{{ patientName }",
    ],
)
def test_render_errors_never_leak_values(source: str) -> None:
    secret = "Jane-Doe-SSN-123"
    with pytest.raises(TemplateRenderError) as info:
        render(source, {"patientName": secret, "when": "2023-12-01 08:00"}, TYPES, CHICAGO)
    assert secret not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_render_undefined_names_the_variable() -> None:
    with pytest.raises(TemplateRenderError, match="undefined variable 'undeclared'"):
        render("{{ undeclared }}", {}, TYPES, CHICAGO)


# --- durations and schema --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("2d", timedelta(days=2)),
        ("1 day 2 hours", timedelta(days=1, hours=2)),
        ("1d 12h", timedelta(days=1, hours=12)),
        ("90 mins", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "5", "2 weeks", "1d and 2h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_split_duration() -> None:
    assert split_duration("2d") == (2, timedelta())
    assert split_duration("1d 12h 30m") == (1, timedelta(hours=12, minutes=30))
    assert split_duration("48h") == (0, timedelta(hours=48))


def test_schema_file_is_current() -> None:
    committed = (ROOT / "docs" / "journey-definition.schema.json").read_text(encoding="utf-8")
    assert committed == definition_json_schema_text(), (
        "docs/journey-definition.schema.json is out of date; regenerate it with: "
        "python -m journeys.definitions.schema > docs/journey-definition.schema.json"
    )
    schema = definition_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://journeys.dev/schema/journey-definition.json"
