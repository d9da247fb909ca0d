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
from journeys.definitions.model import STEP_TYPES, parse_duration, split_duration
from journeys.definitions.schema import definition_json_schema, definition_json_schema_text
from journeys.definitions.templates import (
    LocalDateTime,
    TemplateRenderError,
    build_context,
    compile_template,
    render,
    simple_parts,
    template_variables,
)

pytestmark = pytest.mark.same_on_every_database  # no test here depends on JOURNEYS_TEST_DATABASE

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


def test_nul_anywhere_in_a_definition_is_a_problem_with_its_line() -> None:
    """PostgreSQL cannot store NUL (a YAML "\\0" or a JSON "\\u0000"): every one is reported."""
    text = edit('body: "Hi {{ patientName }}"', 'body: "Hi\\0 {{ patientName }}"')
    text = edit("  - name: patientName", '  - name: patientName\n    description: "a\\x00b"', text)
    text = edit("name: Test", 'name: Test\ndescription: ok\n"bad\\0key": 1', text)
    assert [(p.path, p.line, p.message) for p in problems_of(text)] == [
        ("bad\x00key", 3, "a key must not contain NUL characters (\\u0000)"),
        ("parameters[0].description", 6, "must not contain NUL characters (\\u0000)"),
        ("flows[0].steps[0].body", 22, "must not contain NUL characters (\\u0000)"),
    ]
    data = load_definition_text(BASE).model_dump(mode="json", exclude_none=True)
    data["flows"][1]["name"] = "Sub\u0000"
    problem = only_problem(json.dumps(data, indent=2), "journey.json")
    assert (problem.path, problem.message) == ("flows[1].name", "must not contain NUL characters (\\u0000)")
    assert problem.line is not None


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
    assert loop[0].message.startswith(
        "steps 10 -> 15 -> 10 form a loop with no wait, wait_until or wait_for_reply step"
    )


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


# --- one run reports every problem: the model's and the cross-references' -------------------


def found(text: str) -> list[tuple[int | None, str, str]]:
    return [(p.line, p.path, p.message) for p in problems_of(text)]


def test_a_shape_problem_does_not_hide_the_reference_problems_elsewhere() -> None:
    text = edit("        type: end\n", "        type: send_text\n")
    text = edit("        to: phone\n", "        to: mobile\n", text)
    text = edit("        duration: 1h\n", "        duration: 1h\n        next: 35\n", text).replace(
        "        next: 30\n", ""
    )
    assert found(text) == [
        (18, "flows[0].steps[0].to", "no parameter named 'mobile' (phone parameters: phone)"),
        (
            25,
            "flows[0].steps[2].type",
            "unknown step type 'send_text' (expected one of: send_sms, send_email, http_request, wait, "
            "wait_until, wait_for_reply, branch, set_parameters, goto, end)",
        ),
        (32, "flows[1].steps[0].next", "no step with id 35"),
    ]


def test_a_reference_to_a_step_that_did_not_parse_is_not_unknown() -> None:
    # Step 30 fails the model; step 40's `next: 30` names it, so only the shape problem is reported.
    text = edit("        type: end\n", "        type: end\n        colour: red\n")
    assert found(text) == [(26, "flows[0].steps[2].colour", "unknown field")]
    # ... also when its id is written as the model would read it, and while its type is unknown.
    text = edit("      - id: 30\n        type: end\n", "      - id: '30'\n        type: finish\n")
    assert [(line, path) for line, path, _ in found(text)] == [(25, "flows[0].steps[2].type")]
    # A step whose id cannot be read at all gives no id to refer to.
    text = edit("      - id: 30\n        type: end\n", "      - id: thirty\n        type: end\n")
    assert found(text) == [
        (24, "flows[0].steps[2].id", "expected a whole number, got text"),
        (32, "flows[1].steps[0].next", "no step with id 30"),
    ]


def test_a_step_that_did_not_parse_still_counts_for_duplicate_ids() -> None:
    text = edit("      - id: 40\n", "      - id: 20\n")
    text = edit("        duration: 1h\n", "        duration: 1h\n        colour: red\n", text)
    assert found(text) == [
        (
            29,
            "flows[1].steps[0].id",
            "duplicate step id 20 (flows[0].steps[1] has the same id; step ids must be unique across the "
            "whole journey)",
        ),
        (32, "flows[1].steps[0].colour", "unknown field"),
    ]


def test_a_reference_to_a_parameter_that_did_not_parse_is_not_unknown_nor_of_the_wrong_type() -> None:
    # `phone` fails on its type: `to: phone` is neither unknown nor "not a phone parameter".
    assert found(edit("    type: phone\n", "    type: mobile\n")) == [
        (
            9,
            "parameters[3].type",
            "unknown parameter type 'mobile' (expected one of: string, datetime, phone, email, number)",
        ),
    ]
    # `phone` fails elsewhere: its type is still known, so `to: when` (a datetime) is reported.
    text = edit("    required: false\n", "    requird: false\n")
    text = edit("        to: phone\n", "        to: when\n", text)
    assert found(text) == [
        (10, "parameters[3].requird", "unknown field (did you mean 'required'?)"),
        (18, "flows[0].steps[0].to", "parameter 'when' is of type datetime, not phone"),
    ]
    # A template may name it; a parameter without a readable name gives nothing to refer to.
    text = edit("  - name: patientName\n", "  - name: [patientName]\n")
    assert found(text) == [
        (3, "parameters[0].name", "expected text, got a list"),
        (
            19,
            "flows[0].steps[0].body",
            "template uses unknown variable 'patientName' (parameters: appointmentId, phone, when)",
        ),
    ]


def test_the_whole_graph_is_checked_once_every_step_parses() -> None:
    unreachable = "      - id: 30\n        type: end\n      - id: 35\n        type: end\n"
    text = edit("      - id: 30\n        type: end\n", unreachable)
    assert found(text) == [(26, "flows[0].steps[3]", "step 35 is unreachable")]
    # While a step fails, where the steps lead is not known: no "unreachable" or loop is reported.
    failing = edit("        duration: 1h\n", "        duration: 1\n", text)
    assert [path for _, path, _ in found(failing)] == ["flows[1].steps[0].duration"]
    # A problem outside the steps does not stop the graph checks.
    outside = edit("flows:\n", "send_window: {start: '21:00', end: '08:00'}\nflows:\n", text)
    assert found(outside) == [
        (11, "send_window", "the send window's start must be before its end"),
        (27, "flows[0].steps[3]", "step 35 is unreachable"),
    ]


def test_a_reply_condition_is_not_checked_while_a_step_that_may_record_it_fails() -> None:
    text = edit("- reply: confirmed", "- reply: maybe", FULL)
    assert "no wait_for_reply step has the outcome 'maybe'" in only_problem(text).message
    failing = edit("        timeout: 24h\n", "        timeout: 24\n", text)
    assert [path for _, path, _ in found(failing)] == ["flows[0].steps[1].timeout"]
    # The other references are still checked.
    failing = edit("        to: email\n", "        to: mail\n", failing)
    assert [path for _, path, _ in found(failing)] == ["flows[0].steps[1].timeout", "flows[0].steps[2].to"]


def test_unreadable_lists_give_only_the_shape_problems() -> None:
    # Without the parameters list, every parameter reference would be reported: none is.
    text = edit("parameters:\n", "parameters: {}\nunused:\n")
    assert [path for _, path, _ in found(edit("        to: phone\n", "        to: mobile\n", text))] == [
        "parameters",
        "unused",
    ]
    steps = edit("    steps:\n      - id: 40\n", "    steps: {}\n    more:\n      - id: 40\n")
    assert [path for _, path, _ in found(steps)] == ["flows[1].steps", "flows[1].more"]


# --- the control-flow steps: send_email, http_request, wait_for_reply, branch, set_parameters, goto

# Line numbers below refer to this text (line 1 is "name: Everything").
FULL = """\
name: Everything
parameters:
  - name: appointmentId
    identifier: true
  - name: patientName
  - name: phone
    type: phone
    required: false
  - name: email
    type: email
    required: false
  - name: when
    type: datetime
  - name: status
    required: false
  - name: replyText
    required: false
  - name: followUp
    type: datetime
    required: false
send_window:
  start: "08:00"
  end: "20:00"
frequency_cap:
  per_day: 2
  per_7_days: null
flows:
  - id: main
    name: Main
    main: true
    steps:
      - id: 10
        type: send_sms
        to: phone
        body: "Hi {{ patientName }}, reply C to confirm {{ when | date }}."
        frequency_cap: false
      - id: 20
        type: wait_for_reply
        to: phone
        timeout: 24h
        save_reply_to: replyText
        replies:
          - outcome: confirmed
          - outcome: reschedule
            next: 70
          - outcome: cancel
            match: [cancel, "stop visit"]
            next: 80
        on_other: 40
        on_timeout: 30
      - id: 30
        type: send_email
        to: email
        subject: "Your appointment on {{ when | date('%b %-d') }}"
        body: "Hi {{ patientName }}, please confirm."
        html: "<p>Hi {{ patientName }}</p>"
        send_window: true
      - id: 40
        type: http_request
        method: POST
        url: "https://ehr.example.com/appointments/{{ appointmentId }}/status"
        headers:
          Authorization: "Bearer {{ appointmentId }}"
        body:
          reply: "{{ replyText }}"
          tags: [journey, "{{ patientName }}"]
          count: 1
        timeout: 15s
        save:
          status: data.status
          followUp: data.followUp
        on_failure: 90
      - id: 50
        type: branch
        cases:
          - when: {parameter: status, equals: confirmed}
            next: 90
          - when:
              all:
                - reply: confirmed
                - not: {parameter: email, empty: true}
                - parameter: when
                  after: now+2d
            next: 60
          - when:
              any:
                - reply: no_reply
                - parameter: followUp
                  before: when
                - parameter: status
                  in: [new, pending]
            next: 60
        else: 90
      - id: 60
        type: set_parameters
        values:
          status: "pending-{{ patientName }}"
          followUp: "{{ when | date('%Y-%m-%d %H:%M') }}"
        next: 90
      - id: 70
        type: goto
        target: 100
      - id: 80
        type: wait
        duration: 1h
      - id: 90
        type: end
        outcome: done
  - id: rescheduled
    name: Rescheduled
    steps:
      - id: 100
        type: wait_until
        parameter: when
        before: 1d
        next: 10
"""


def full_problem(old: str, new: str) -> Problem:
    return only_problem(edit(old, new, FULL))


def test_every_step_type_validates_cleanly() -> None:
    defn = load_definition_text(FULL)
    assert validate_graph(defn) == []
    assert {step.type for flow in defn.flows for step in flow.steps} == set(STEP_TYPES)
    stored = json.loads(defn.model_dump_json(by_alias=True))
    assert stored["flows"][0]["steps"][4]["else"] == 90
    assert definition_from_stored(stored) == defn


SMS_TEXT = "Hi {{ patientName }}, reply C to confirm {{ when | date }}."
SMS, SMS_AT = "Hi {{ patientName }}, reply", "flows[0].steps[0].body"
SUBJECT, HTML, HTML_AT = "email subject", "email html", "flows[0].steps[2].html"
BUILDS = "template builds a value larger than 1,000,000 characters (the limit) at template line 1"
WORK = "template does more than 10,000,000 characters or loop steps of work (the limit) at template line 1"


def too_long(label: str, limit: int) -> str:
    return f"the {label} renders more than {limit:,} characters (the limit)"


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        # Each of these allocated (or tried to) hundreds of megabytes, or ran for ever.
        (SMS, "{{ 'x' * 300000000 }}", SMS_AT, BUILDS),
        (SMS, "{{ patientName * 300000000 }}", SMS_AT, BUILDS),
        (SMS, "{{ 'x'.ljust(10**9) }}", SMS_AT, BUILDS),
        (SMS, "{{ 'x'|center(10**9) }}", SMS_AT, BUILDS),
        (SMS, "{{ '%999999999d' % 1 }}", SMS_AT, BUILDS),
        (SMS, "{{ '{:>999999999}'.format(1) }}", SMS_AT, BUILDS),
        (SMS, "{{ 10 ** (10 ** 8) }}", SMS_AT, BUILDS),
        (SMS, "{{ (5).to_bytes(10**9, 'big') }}", SMS_AT, BUILDS),
        (SMS, "{{ ('x' * 999999).replace('', 'yy') }}", SMS_AT, BUILDS),
        (SMS, "{{ range(9)|slice(10**9)|list }}", SMS_AT, BUILDS),
        (SMS, "{{ ','.join(['x' * 9999] * 999) }}", SMS_AT, BUILDS),
        (
            "Hi {{ patientName }}, reply",
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            SMS_AT,
            BUILDS,
        ),
        (
            "Hi {{ patientName }}, reply",
            "{% macro m(s, n) %}{{ m(s ~ s, n - 1) if n else s }}{% endmacro %}{{ m(patientName, 64) }}",
            SMS_AT,
            BUILDS,
        ),
        (
            "Hi {{ patientName }}, reply",
            "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
            SMS_AT,
            WORK,
        ),
        # Output past the field's limit, constant or with any value.
        (SMS, "{{ 'x' * 1601 }}", SMS_AT, too_long("SMS body", 1600)),
        (SMS, "{{ patientName * 1601 }}", SMS_AT, too_long("SMS body", 1600)),
        (
            "Hi {{ patientName }}, reply",
            "{% for i in range(1000) %}{{ patientName }}, {% endfor %}",
            SMS_AT,
            too_long("SMS body", 1600),
        ),
        ("Your appointment on", "{{ '-' * 1001 }}", "flows[0].steps[2].subject", too_long(SUBJECT, 1000)),
        (
            "Hi {{ patientName }}, please confirm.",
            "{{ 'x' * 100001 }}",
            "flows[0].steps[2].body",
            too_long("email body", 100_000),
        ),
        ("<p>Hi {{ patientName }}</p>", "{{ '<' * 50001 }}", HTML_AT, too_long(HTML, 200000)),
        ("/status\"", "/{{ 'x' * 8192 }}\"", "flows[0].steps[3].url", too_long("http_request url", 8192)),
        (
            "Bearer {{ appointmentId }}",
            "{{ 'x' * 8193 }}",
            "flows[0].steps[3].headers.Authorization",
            too_long("http_request header value", 8192),
        ),
        (
            "reply: \"{{ replyText }}\"",
            "reply: \"{{ 'x' * 100001 }}\"",
            "flows[0].steps[3].body.reply",
            too_long("http_request body", 100_000),
        ),
        ("pending-{{ patientName }}", "{{ 'x' * 300000000 }}", "flows[0].steps[5].values.status", BUILDS),
    ],
)
def test_templates_that_go_past_a_limit_are_validation_problems(
    old: str, new: str, path: str, message: str
) -> None:
    problem = full_problem(old, new)
    assert (problem.path, problem.message) == (path, message)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (SMS_TEXT, "{{ 'x' * 1600 }}"),  # exactly the SMS limit
        (SMS, "{% for i in range(100) %}{{ loop.index }}{% endfor %}"),
        (SMS, "{{ '-' * 20 ~ patientName|upper ~ ('%05d' % 42) ~ '{:>6}'.format('x') }}"),
        ("Your appointment on {{ when | date('%b %-d') }}", "{{ '-' * 1000 }}"),
        ("pending-{{ patientName }}", "{{ 'x' * 5000 }}"),  # set_parameters values are cut at 1,000
        # Over the limit only for some values: left to run time (the step fails then).
        (SMS, "{% if patientName == 'Long' %}{{ 'x' * 2000 }}{% endif %}"),
    ],
)
def test_templates_within_their_limits_validate(old: str, new: str) -> None:
    load_definition_text(edit(old, new, FULL))


def test_send_email_to_must_be_an_email_parameter() -> None:
    problem = full_problem("        to: email\n", "        to: phone\n")
    assert (problem.path, problem.line) == ("flows[0].steps[2].to", 53)
    assert problem.message == "parameter 'phone' is of type phone, not email"
    problem = full_problem("        to: email\n", "        to: emial\n")
    assert problem.message == "no parameter named 'emial' (did you mean 'email'?)"


def test_wait_for_reply_to_must_be_a_phone_parameter() -> None:
    problem = full_problem(
        "type: wait_for_reply\n        to: phone\n", "type: wait_for_reply\n        to: email\n"
    )
    assert (problem.path, problem.line) == ("flows[0].steps[1].to", 39)
    assert problem.message == "parameter 'email' is of type email, not phone"


def test_save_reply_to_must_name_a_parameter_that_is_not_an_identifier() -> None:
    problem = full_problem("save_reply_to: replyText", "save_reply_to: replyTxt")
    assert (problem.path, problem.line) == ("flows[0].steps[1].save_reply_to", 41)
    assert problem.message == "no parameter named 'replyTxt' (did you mean 'replyText'?)"
    problem = full_problem("save_reply_to: replyText", "save_reply_to: appointmentId")
    assert (problem.path, problem.line) == ("flows[0].steps[1].save_reply_to", 41)
    assert problem.message.startswith("cannot set identifier parameter 'appointmentId'")


def test_http_save_cannot_set_an_identifier_parameter() -> None:
    problem = full_problem("          status: data.status\n", "          APPOINTMENTID: data.id\n")
    assert (problem.path, problem.line) == ("flows[0].steps[3].save.APPOINTMENTID", 70)
    assert problem.message == (
        "cannot set identifier parameter 'appointmentId' "
        "(instances are found by their identifier values, so they must not change)"
    )


def test_http_save_path_must_be_dotted() -> None:
    problem = full_problem("status: data.status", "status: data..status")
    assert (problem.path, problem.line) == ("flows[0].steps[3].save.status", 70)
    assert problem.message.startswith("'data..status' is not a dotted path into the JSON response")


def test_set_parameters_keys_must_be_settable_parameters() -> None:
    problem = full_problem('          status: "pending', '          stauts: "pending')
    assert (problem.path, problem.line) == ("flows[0].steps[5].values.stauts", 97)
    assert problem.message == "no parameter named 'stauts' (did you mean 'status'?)"
    problem = full_problem('          status: "pending', '          appointmentId: "pending')
    assert (problem.path, problem.line) == ("flows[0].steps[5].values.appointmentId", 97)
    assert problem.message.startswith("cannot set identifier parameter 'appointmentId'")
    problem = full_problem("        values:\n", "        values:\n          STATUS: x\n")
    assert (problem.path, problem.line) == ("flows[0].steps[5].values.status", 98)
    assert problem.message == (
        "parameter 'status' is set twice (also as 'STATUS'; parameter names are case-insensitive)"
    )


def test_set_parameters_datetime_needs_a_machine_readable_value() -> None:
    problem = full_problem("{{ when | date('%Y-%m-%d %H:%M') }}", "{{ when }}")
    assert (problem.path, problem.line) == ("flows[0].steps[5].values.followUp", 98)
    assert problem.message.startswith("'{{ when }}' renders as friendly text")
    assert "{{ when | date('%Y-%m-%d %H:%M') }}" in problem.message


@pytest.mark.parametrize(
    ("old", "new", "path", "line"),
    [
        ("target: 100", "target: 999", "flows[0].steps[6].target", 102),
        ("on_failure: 90", "on_failure: 999", "flows[0].steps[3].on_failure", 72),
        ("on_other: 40", "on_other: 999", "flows[0].steps[1].on_other", 49),
        ("on_timeout: 30", "on_timeout: 999", "flows[0].steps[1].on_timeout", 50),
        ("next: 70\n", "next: 999\n", "flows[0].steps[1].replies[1].next", 45),
        ("            next: 80\n", "            next: 999\n", "flows[0].steps[1].replies[2].next", 48),
        ("            next: 90\n", "            next: 999\n", "flows[0].steps[4].cases[0].next", 77),
        ("else: 90", "else: 999", "flows[0].steps[4].else", 93),
    ],
)
def test_step_references_must_exist(old: str, new: str, path: str, line: int) -> None:
    problems = problems_of(edit(old, new, FULL))
    assert Problem("no step with id 999", path, line) in problems
    assert all("no step" not in p.message or p.path == path for p in problems)


def test_goto_and_branch_with_else_ignore_next() -> None:
    problem = full_problem("        target: 100\n", "        target: 100\n        next: 80\n")
    assert (problem.path, problem.line) == ("flows[0].steps[6].next", 103)
    assert (
        problem.message == "a goto step always continues at its 'target', so 'next' has no effect (remove it)"
    )
    problem = full_problem("        else: 90\n", "        else: 90\n        next: 60\n")
    assert (problem.path, problem.line) == ("flows[0].steps[4].next", 94)
    assert problem.message == "this branch has 'else', so 'next' has no effect (remove one of them)"


def test_reply_outcomes_unique_within_a_step() -> None:
    problem = full_problem("          - outcome: cancel\n", "          - outcome: reschedule\n")
    assert (problem.path, problem.line) == ("flows[0].steps[1].replies[2].outcome", 46)
    assert problem.message == (
        "duplicate outcome 'reschedule' (flows[0].steps[1].replies[1] has the same outcome)"
    )


@pytest.mark.parametrize("outcome", ["other", "no_reply"])
def test_reserved_reply_outcomes(outcome: str) -> None:
    problem = full_problem("outcome: cancel", f"outcome: {outcome}")
    assert (problem.path, problem.line) == ("flows[0].steps[1].replies[2].outcome", 46)
    assert problem.message.startswith(f"'{outcome}' is a reserved outcome (")


def test_reply_route_without_default_keywords_needs_match() -> None:
    problem = full_problem('            match: [cancel, "stop visit"]\n', "")
    assert (problem.path, problem.line) == ("flows[0].steps[1].replies[2]", 46)
    assert problem.message == (
        "reply outcome 'cancel' needs 'match' (a list of keywords; only 'confirmed' and 'reschedule' "
        "have default keywords)"
    )


def test_reply_match_must_not_be_empty_or_shadowed() -> None:
    problem = full_problem('[cancel, "stop visit"]', "[]")
    assert (problem.path, problem.line) == ("flows[0].steps[1].replies[2].match", 47)
    assert problem.message == "'match' is empty, so this reply can never be chosen"
    problem = full_problem('[cancel, "stop visit"]', '[cancel, " Yes!"]')
    assert (problem.path, problem.line) == ("flows[0].steps[1].replies[2].match[1]", 47)
    assert problem.message == (
        "keyword 'yes' is already matched by flows[0].steps[1].replies[0] ('confirmed'), which is tried first"
    )


def test_condition_parameter_must_exist() -> None:
    problem = full_problem("{parameter: status, equals: confirmed}", "{parameter: stat, equals: confirmed}")
    assert (problem.path, problem.line) == ("flows[0].steps[4].cases[0].when.parameter", 76)
    assert problem.message == "no parameter named 'stat' (did you mean 'status'?)"
    problem = full_problem("{parameter: email, empty: true}", "{parameter: mail, empty: true}")
    assert (problem.path, problem.line) == ("flows[0].steps[4].cases[1].when.all[1].not.parameter", 81)
    problem = full_problem("{parameter: email, empty: true}", "{parameter: fax, empty: true}")
    assert problem.message.startswith("no parameter named 'fax' (parameters: appointmentId, patientName,")


def test_condition_case_insensitive_parameter_is_fine() -> None:
    text = edit("{parameter: status, equals: confirmed}", "{parameter: STATUS, equals: confirmed}", FULL)
    assert load_definition_text(text)


def test_before_and_after_need_datetime_parameters() -> None:
    problem = full_problem(
        "                - parameter: when\n                  after: now+2d\n",
        "                - parameter: patientName\n                  after: now+2d\n",
    )
    assert (problem.path, problem.line) == ("flows[0].steps[4].cases[1].when.all[2].parameter", 82)
    assert problem.message == "parameter 'patientName' is of type string, not datetime"
    problem = full_problem("before: when", "before: status")
    assert (problem.path, problem.line) == ("flows[0].steps[4].cases[2].when.any[1].before", 89)
    assert problem.message == "parameter 'status' is of type string, not datetime"
    problem = full_problem("before: when", "before: whn")
    assert problem.message == "no parameter named 'whn' (did you mean 'when'?)"


def test_before_now_offset_is_checked_by_the_model() -> None:
    problem = full_problem("after: now+2d", "after: now+2 weeks")
    assert (problem.path, problem.line) == ("flows[0].steps[4].cases[1].when.all[2]", 82)
    assert "is not a duration" in problem.message


def test_reply_condition_needs_an_outcome_a_step_can_produce() -> None:
    problem = full_problem("- reply: confirmed", "- reply: confirm")
    assert (problem.path, problem.line) == ("flows[0].steps[4].cases[1].when.all[0].reply", 80)
    assert problem.message == "no wait_for_reply step has the outcome 'confirm' (did you mean 'confirmed'?)"
    problem = full_problem("- reply: confirmed", "- reply: maybe")
    assert problem.message == (
        "no wait_for_reply step has the outcome 'maybe' "
        "(outcomes: cancel, confirmed, no_reply, other, reschedule)"
    )


def test_reply_condition_without_any_wait_for_reply_step() -> None:
    branch = "        type: branch\n        cases:\n          - when: {reply: other}\n            next: 10\n"
    problem = only_problem(edit("        type: end\n", branch))
    assert (problem.path, problem.line) == ("flows[0].steps[2].cases[0].when.reply", 27)
    assert problem.message == "the journey has no wait_for_reply step, so a 'reply' condition never holds"


def test_empty_in_and_all() -> None:
    problem = full_problem("in: [new, pending]", "in: []")
    assert (problem.path, problem.line) == ("flows[0].steps[4].cases[2].when.any[2].in", 91)
    assert problem.message == "'in' needs at least one value"
    problem = full_problem("{parameter: status, equals: confirmed}", "{all: []}")
    assert (problem.path, problem.line) == ("flows[0].steps[4].cases[0].when.all", 76)
    assert problem.message == "'all' needs at least one condition"


@pytest.mark.parametrize(
    ("old", "new", "path", "line", "message"),
    [
        (
            "{{ when | date('%b %-d') }}",
            "{{ whn }}",
            "flows[0].steps[2].subject",
            54,
            "unknown variable 'whn'",
        ),
        ("please confirm.", "{{ doctor }}", "flows[0].steps[2].body", 55, "unknown variable 'doctor'"),
        ("<p>Hi {{ patientName }}</p>", "<p>{{ patientName }</p>", "flows[0].steps[2].html", 56, "syntax"),
        ("/{{ appointmentId }}/", "/{{ appointmentID }}/", "flows[0].steps[3].url", 61, "'appointmentId'?"),
        (
            "Bearer {{ appointmentId }}",
            "Bearer {{ token }}",
            "flows[0].steps[3].headers.Authorization",
            63,
            "",
        ),
        ('reply: "{{ replyText }}"', 'reply: "{{ reply }}"', "flows[0].steps[3].body.reply", 65, ""),
        ('"{{ patientName }}"]', '"{{ patient }}"]', "flows[0].steps[3].body.tags[1]", 66, "'patient'"),
        (
            "pending-{{ patientName }}",
            "{{ patientName | nope }}",
            "flows[0].steps[5].values.status",
            97,
            "nope",
        ),
    ],
)
def test_templates_of_new_steps_are_checked(old: str, new: str, path: str, line: int, message: str) -> None:
    problem = full_problem(old, new)
    assert (problem.path, problem.line) == (path, line)
    assert problem.message.startswith("template ") and message in problem.message


def test_http_url_must_be_http() -> None:
    problem = full_problem('url: "https://ehr', 'url: "ftp://ehr')
    assert (problem.path, problem.line) == ("flows[0].steps[3].url", 61)
    assert problem.message == "the url must start with http:// or https:// (lower case)"
    assert load_definition_text(edit('url: "https://ehr.example.com', 'url: "{{ status }}', FULL))


def test_http_get_has_no_body() -> None:
    problem = full_problem("method: POST", "method: GET")
    assert (problem.path, problem.line) == ("flows[0].steps[3].body", 64)
    assert problem.message.startswith("a GET request is sent without a body")


def test_goto_does_not_fall_through() -> None:
    problem = full_problem("            next: 80\n", "            next: 90\n")
    assert (problem.path, problem.line) == ("flows[0].steps[7]", 103)
    assert problem.message == "step 80 is unreachable"


def test_fully_routed_wait_for_reply_does_not_fall_through() -> None:
    text = edit(
        "          - outcome: confirmed\n", "          - outcome: confirmed\n            next: 40\n", FULL
    )
    problem = only_problem(edit("on_timeout: 30", "on_timeout: 40", text))
    assert (problem.path, problem.line) == ("flows[0].steps[2]", 52)
    assert problem.message == "step 30 is unreachable"
    problems = problems_of(
        edit("        on_timeout: 30\n", "        on_timeout: 40\n        next: 90\n", text)
    )
    assert [(p.path, p.line) for p in problems] == [("flows[0].steps[1].next", 52), ("flows[0].steps[2]", 53)]
    assert problems[0].message.startswith("every reply route, on_other and on_timeout name their step")


def test_loop_through_branch_without_wait() -> None:
    problem = full_problem("        next: 90\n      - id: 70\n", "        next: 50\n      - id: 70\n")
    assert (problem.path, problem.line) == ("flows[0].steps[4]", 73)
    assert problem.message == (
        "steps 50 -> 60 -> 50 form a loop with no wait, wait_until or wait_for_reply step, "
        "so it would repeat without pause"
    )


@pytest.mark.parametrize(
    ("old", "new", "path", "line", "loop"),
    [
        ("on_failure: 90", "on_failure: 40", "flows[0].steps[3]", 58, "40 -> 40"),
        ("target: 100", "target: 70", "flows[0].steps[6]", 100, "70 -> 70"),
    ],
)
def test_loops_through_new_steps(old: str, new: str, path: str, line: int, loop: str) -> None:
    problems = problems_of(edit(old, new, FULL))
    loops = [p for p in problems if "loop" in p.message]
    assert [(p.path, p.line) for p in loops] == [(path, line)]
    assert loops[0].message.startswith(f"steps {loop} form a loop")


def test_loop_through_wait_for_reply_is_fine() -> None:
    assert load_definition_text(edit("on_other: 40", "on_other: 10", FULL))


def test_new_steps_unknown_fields_suggest_names() -> None:
    problem = full_problem("        save_reply_to: replyText\n", "        save_reply: replyText\n")
    assert (problem.path, problem.line) == ("flows[0].steps[1].save_reply", 41)
    assert problem.message == "unknown field (did you mean 'save_reply_to'?)"
    problem = full_problem("{parameter: status, equals: confirmed}", "{parameter: status, equal: confirmed}")
    assert (problem.path, problem.line) == ("flows[0].steps[4].cases[0].when.equal", 76)
    assert problem.message == "unknown field (did you mean 'equals'?)"
    problem = full_problem("        else: 90\n", "        els: 90\n")
    assert problem.message == "unknown field (did you mean 'else'?)"


def test_new_steps_value_hints() -> None:
    problem = full_problem("timeout: 24h", "timeout: 24")
    assert (problem.path, problem.line) == ("flows[0].steps[1].timeout", 40)
    assert problem.message == "expected text, got a number (a duration needs a unit, e.g. '30m', '24h', '2d')"
    problem = full_problem("equals: confirmed}", "equals: 5}")
    assert (problem.path, problem.line) == ("flows[0].steps[4].cases[0].when.equals", 76)
    assert problem.message.endswith("(conditions compare parameter values as text: quote the value)")
    problem = full_problem('  start: "08:00"\n', "  start: 8\n")
    assert (problem.path, problem.line) == ("send_window.start", 22)
    problem = full_problem('  end: "20:00"\n', '  end: "07:00"\n')
    assert (problem.path, problem.line) == ("send_window", 21)
    assert problem.message == "the send window's start must be before its end"


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
        ("3660d", timedelta(days=3660)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "soon", "5", "2 weeks", "1d and 2h", "２d", "1٥m", "3661d", "3660d 1s", "99999999999999d"]
    + ["9" * 5000 + "s"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_duration_beyond_ten_years_is_a_problem_not_an_overflow() -> None:
    problem = only_problem(edit("duration: 1h", "duration: 99999999999d"))
    assert (problem.path, problem.line) == ("flows[1].steps[0].duration", 31)
    assert "is longer than 3660 days" in problem.message
    problem = only_problem(edit("before: 1d", "before: 999999999d"))
    assert problem.path == "flows[0].steps[1].before" and "is longer than 3660 days" in problem.message


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


def test_journeys_in_the_definitions_doc_validate() -> None:
    doc = (ROOT / "docs" / "definitions.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in doc.split("```yaml\n")[1:]]
    journeys = [b for b in blocks if b.startswith("name:")]
    assert len(journeys) >= 2
    for block in journeys:
        assert validate_graph(load_definition_text(block, "definitions.md")) == []


def test_reply_outcome_spelling() -> None:
    problem = full_problem("outcome: cancel", "outcome: Cancel")
    assert (problem.path, problem.line) == ("flows[0].steps[1].replies[2].outcome", 46)
    assert problem.message == (
        "'Cancel' is not allowed "
        "(an outcome uses lower-case letters, digits and '_' and starts with a letter)"
    )
    problem = only_problem(edit("  - id: sub\n", "  - id: -sub\n"))
    assert problem.message.startswith("'-sub' is not allowed (a flow id uses letters")


@pytest.mark.parametrize(
    "source",
    [
        "Hi {{ name }}, your visit is {{ when }}.",
        "{{name}}{{when}}",
        "{{ name }}",
        "plain text, no variables",
        "braces { alone } and }} are text {{ name }}",
        "Ünïcødé ✓ {{ name }} — 日本",
        "line one\nline two {{ name }}",
        "",
    ],
)
def test_simple_templates_render_exactly_as_jinja_does(source: str) -> None:
    """Templates of only text and `{{ name }}` skip Jinja2 when rendering; the output is the same."""
    zone = ZoneInfo("America/Chicago")
    types = {"name": "string", "when": "datetime"}
    params = {"name": "Ana <b>&amp; {{x}}", "when": "2026-12-01 09:30:00"}
    assert simple_parts(source) is not None
    expected = compile_template(source).render(build_context(params, types, zone))
    assert render(source, params, types, zone) == expected


@pytest.mark.parametrize(
    "source",
    [
        "{{ name|upper }}",
        "{% if name %}x{% endif %}",
        "{# c #}{{ name }}",
        "{{- name }}",
        "a {{ name }}\n",
        "a\r\nb",
    ],
)
def test_other_templates_are_left_to_jinja(source: str) -> None:
    assert simple_parts(source) is None
    zone = ZoneInfo("UTC")
    params = {"name": "ana"}
    assert render(source, params, {"name": "string"}, zone) == compile_template(source).render(
        build_context(params, {"name": "string"}, zone)
    )
