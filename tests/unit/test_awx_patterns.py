"""The AWX/AAP pattern (extensions/patterns/llmserve_cluster): job templates, surveys and credential types as data.

Each survey and credential type is checked by a small validator that applies the rules AWX itself applies when the
data is POSTed (ansible/awx, read at commit e21dd0a0, 2024-10-23):

- awx/api/views/__init__.py, JobTemplateSurveySpec._validate_spec_data: what POST .../survey_spec/ refuses;
- awx/main/constants.py, SURVEY_TYPE_MAPPING: the question types and the Python type of each one's default;
- awx/main/models/mixins.py, SurveyJobTemplateMixin._survey_element_validation: what a launch refuses, and
  _update_unified_job_kwargs: a default that fails it is silently not passed;
- awx/main/fields.py, CredentialTypeInputField (schema and validate) and CredentialTypeInjectorField (schema,
  validate_env_var_allowed, validate): what POST /api/v2/credential_types/ refuses; ENV_BLOCKLIST in constants.py;
- awx/api/serializers.py, CredentialTypeSerializer.validate: a custom type's kind is cloud or net, no ask_at_runtime;
- awx/main/models/credential.py, CredentialType.inject_credential: how a credential's fields become extra vars.

The pattern's layout follows the pattern specification and schema of ansible/pattern-service
(specifications/pattern-schema/pattern-schema-3.0.0.json, the schema ansible-lint ships as schemas/pattern.json),
which the pattern service loads from extensions/patterns/<name>/meta/pattern.json (core/tasks/pattern.py,
core/utils/controller/helpers.py create_job_templates: the playbook is relative to the pattern's playbooks folder,
the survey is POSTed to survey_spec), and setup.yml, which ansible-pattern-loader includes as the variables of
infra.controller_configuration's dispatch role.

Then the data is checked against the collection: every survey variable and injected extra var is a variable of
roles/defaults/meta/argument_specs.yml whose type takes what AWX sends, every secret there (no_log) comes from a
secret credential field and from no survey, and every job template runs a pattern playbook that imports an existing
playbook of the collection. The negative tests break valid data one way each and expect the validators to say so.
"""
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ansible_collections.llmserve.cluster.plugins.plugin_utils._planner import _convert

REPO = Path(__file__).resolve().parents[2]
PATTERN_DIR = REPO / "extensions" / "patterns" / "llmserve_cluster"
PATTERN = json.loads((PATTERN_DIR / "meta" / "pattern.json").read_text())
SETUP = yaml.safe_load((PATTERN_DIR / "setup.yml").read_text())
CREDENTIAL_TYPES = {path.stem: yaml.safe_load(path.read_text())
                    for path in sorted((PATTERN_DIR / "credential_types").glob("*.yml"))}
SPEC = yaml.safe_load((REPO / "roles" / "defaults" / "meta" / "argument_specs.yml").read_text())
OPTIONS = SPEC["argument_specs"]["main"]["options"]
SECRETS = {name for name, option in OPTIONS.items() if option.get("no_log")}
JOB_TEMPLATES = PATTERN["aap_resources"]["controller_job_templates"]
SURVEYED = [jt for jt in JOB_TEMPLATES if "survey" in jt]

# ---------------------------------------------------------------- AWX's survey rules

# awx/main/constants.py SURVEY_TYPE_MAPPING: question type -> the Python type(s) its default must be
SURVEY_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
                "integer": int, "float": (float, int)}


def _lines(value):
    """AWX's reading of choices or defaults given as one string: one per line, blank lines dropped."""
    return [line for line in value.splitlines() if line.strip() != ""]


def survey_errors(survey):
    """What POST /api/v2/job_templates/<id>/survey_spec/ would refuse (JobTemplateSurveySpec._validate_spec_data):
    the first error of the survey, as AWX answers with the first, or [] when AWX would take it. A "$encrypted$"
    default is refused: AWX takes it only in place of the earlier spec's encrypted default, and a new spec has none."""
    if not isinstance(survey, dict):
        return ["survey is not a mapping"]
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if field not in survey:
            return ["field %r is missing from survey spec" % field]
        if not isinstance(survey[field], kind):
            return ["expected %s for field %r" % (kind.__name__, field)]
    if not survey["spec"]:
        return ["'spec' doesn't contain any items"]
    variables = set()
    for idx, item in enumerate(survey["spec"]):
        if not isinstance(item, dict):
            return ["survey question %d is not a json object" % idx]
        for field in ("type", "question_name", "variable", "required"):
            if field not in item:
                return ["%r missing from survey question %d" % (field, idx)]
            if not isinstance(item[field], bool if field == "required" else str):
                return ["%r in survey question %d has the wrong type" % (field, idx)]
        if item["variable"] in variables:
            return ["'variable' %r duplicated in survey question %d" % (item["variable"], idx)]
        variables.add(item["variable"])
        qtype = item["type"]
        if qtype not in SURVEY_TYPES:
            return ["%r in survey question %d is not one of the allowed question types" % (qtype, idx)]
        if "default" in item and item["default"] != "" and not isinstance(item["default"], SURVEY_TYPES[qtype]):
            return ["default value %r in survey question %d expected to be %s" % (item["default"], idx, qtype)]
        for key in ("min", "max"):
            if key in item and item[key] is not None and not isinstance(item[key], int):
                return ["the %s limit in survey question %d expected to be integer" % (key, idx)]
        if qtype in ("multiplechoice", "multiselect"):
            if "choices" not in item:
                return ["survey question %d of type %s must specify choices" % (idx, qtype)]
            choices = item["choices"]
            if isinstance(choices, str):
                choices = "\n".join(_lines(choices))
            if "default" in item:
                defaults = _lines(item["default"]) if isinstance(item["default"], str) else item["default"]
                if qtype == "multiplechoice" and len(defaults) > 1:
                    return ["multiple choice (single select) can only have one default value (question %d)" % idx]
                # AWX tests `in` against the choices as stored: a list, or the newline-joined string
                if any(default not in choices for default in defaults):
                    return ["default choice must be answered from the choices listed (question %d)" % idx]
        if isinstance(item.get("default"), str) and item["default"].startswith("$encrypted$"):
            if qtype != "password":
                return ["$encrypted$ is a reserved keyword for password question defaults (question %d)" % idx]
            return ["$encrypted$ is a reserved keyword, may not be used for new default in position %d" % idx]
    return []


def answer_errors(item, value):
    """What a launch refuses of one answer (SurveyJobTemplateMixin._survey_element_validation; a default that fails
    it is silently left out by _update_unified_job_kwargs)."""
    qtype, name = item["type"], item["variable"]
    limits = [item.get(key) if item.get(key) not in ("", None) else None for key in ("min", "max")]
    if qtype in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return ["value %r for %r expected to be a string" % (value, name)]
        measure = len(value)
    elif qtype == "integer":
        if type(value) is not int:
            return ["value %r for %r expected to be an integer" % (value, name)]
        measure = value
    elif qtype == "float":
        if type(value) not in (float, int):
            return ["value %r for %r expected to be a numeric type" % (value, name)]
        measure = value
    else:
        choices = _lines(item["choices"]) if isinstance(item["choices"], str) else item["choices"]
        if qtype == "multiselect":
            if type(value) is not list:
                return ["%r value is expected to be a list" % name]
            return ["value %r for %r expected to be one of %s" % (v, name, choices) for v in value if v not in choices]
        return [] if value in choices else ["value %r for %r expected to be one of %s" % (value, name, choices)]
    low, high = limits
    errors = []
    if low is not None and measure < low:
        errors.append("%r value %r is too small" % (name, value))
    if high is not None and measure > high:
        errors.append("%r value %r is too large" % (name, value))
    return errors


# The pattern schema's survey question (pattern-schema-3.0.0.json, controller_job_templates[].survey.spec[]); it
# asks more than AWX: a question_description, a lower-case variable, string choices and a string default (so an
# integer question, whose default AWX wants an integer, has none).
PATTERN_QUESTION = re.compile(r"^[a-z0-9_]{1,64}$")


def pattern_question_errors(item):
    errors = ["%r lacks %s" % (item.get("variable"), key)
              for key in ("type", "question_name", "question_description", "variable", "required") if key not in item]
    if not PATTERN_QUESTION.match(str(item.get("variable", ""))):
        errors.append("variable %r is not lower-case letters, digits and _ (at most 64)" % item.get("variable"))
    if "choices" in item and not (isinstance(item["choices"], list) and all(isinstance(c, str) for c in item["choices"])):
        errors.append("%r: choices must be a list of strings" % item["variable"])
    if item.get("type") == "multiplechoice" and "choices" not in item:
        errors.append("%r: a multiplechoice question needs choices" % item["variable"])
    if "default" in item and not isinstance(item["default"], str):
        errors.append("%r: the pattern schema wants a string default" % item["variable"])
    return errors


# ---------------------------------------------------------------- AWX's credential type rules

# awx/main/fields.py CredentialTypeInputField.schema, restated: the keys a field may have, and what each holds
INPUTS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "required": {"type": "array", "items": {"type": "string"}},
        "fields": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "label"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "pattern": "^[a-zA-Z_]+[a-zA-Z0-9_]*$"},
                "label": {"type": "string"},
                "type": {"enum": ["string", "boolean"]},
                "format": {"enum": ["ssh_private_key", "url"]},
                "choices": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string"}},
                "help_text": {"type": "string"},
                "multiline": {"type": "boolean"},
                "secret": {"type": "boolean"},
                "ask_at_runtime": {"type": "boolean"},
                "default": {},
            }}},
    },
}
# awx/main/fields.py CredentialTypeInjectorField.schema, restated: file templates, environment, extra vars
INJECTORS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "file": {"type": "object", "additionalProperties": False,
                 "patternProperties": {r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$": {"type": "string"}}},
        "env": {"type": "object", "additionalProperties": False,
                "patternProperties": {"^[a-zA-Z_]+[a-zA-Z0-9_]*$": {"type": "string", "pattern": "^[\x00-\x7F]*$"}}},
        "extra_vars": {"type": "object", "additionalProperties": False,
                       "patternProperties": {r"^[a-zA-Z_\{\}]+[a-zA-Z0-9_\{\}]*$": {
                           "anyOf": [{"type": "string"}, {"type": "array"}, {"$ref": "#/properties/extra_vars"}]}}},
    },
}
# awx/main/constants.py ENV_BLOCKLIST: variables a credential may not set (nor any ANSIBLE_*)
ENV_BLOCKLIST = frozenset((
    "VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID", "INVENTORY_UPDATE_ID",
    "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES", "CALLBACK_QUEUE", "CALLBACK_CONNECTION",
    "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS", "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH"))


class _Reserved:
    """AWX's `tower` namespace in injector templates: only tower.filename (with a file injector) may be used."""

    def __init__(self, what):
        self.what = what

    def __str__(self):
        raise UndefinedError(self.what)


def credential_type_errors(ctype):
    """What POST /api/v2/credential_types/ would refuse, or []: CredentialTypeSerializer.validate (kind, no
    ask_at_runtime), CredentialTypeInputField (schema, no dependencies, unique ids, `tower` reserved, default of the
    field's type, choices/multiline/format/secret only on strings) and CredentialTypeInjectorField (schema,
    validate_env_var_allowed, every template rendered with StrictUndefined over the defined fields)."""
    errors = []
    if ctype.get("kind") not in ("cloud", "net"):
        errors.append("kind must be 'cloud' or 'net', not %r" % ctype.get("kind"))
    if not isinstance(ctype.get("name"), str) or not ctype["name"]:
        errors.append("a credential type needs a name")
    inputs, injectors = ctype.get("inputs", {}), ctype.get("injectors", {})
    if isinstance(inputs, dict) and "dependencies" in inputs:
        return errors + ["'dependencies' is not supported for custom credentials"]
    problems = [e.message for e in jsonschema.Draft4Validator(INPUTS_SCHEMA).iter_errors(inputs)]
    if problems:
        return errors + ["inputs: " + p for p in problems]
    ids = []
    for field in inputs.get("fields", []):
        if field["id"] == "tower":
            errors.append('"tower" is a reserved field name')
        if field["id"] in ids:
            errors.append("field IDs must be unique (%s)" % field["id"])
        ids.append(field["id"])
        kind = field.get("type", "string")
        if "default" in field and type(field["default"]) is not {"string": str, "boolean": bool}[kind]:
            errors.append("{} is not a {}".format(field["default"], kind))
        errors += ["%s not allowed for %s type (%s)" % (key, kind, field["id"])
                   for key in ("choices", "multiline", "format", "secret") if key in field and kind != "string"]
        if field.get("ask_at_runtime"):
            errors.append("'ask_at_runtime' is not supported for custom credentials")
    # not AWX's (it stores any name): a required name that is no field can never be given
    errors += ["required names %r, which is no field" % name for name in inputs.get("required", []) if name not in ids]
    if errors:
        return errors
    problems = [e.message for e in jsonschema.Draft4Validator(INJECTORS_SCHEMA).iter_errors(injectors)]
    if problems:
        return ["injectors: " + p for p in problems]
    for var in injectors.get("env", {}):
        if var.startswith("ANSIBLE_"):
            errors.append("environment variable %s may affect Ansible configuration" % var)
        elif var in ENV_BLOCKLIST:
            errors.append("environment variable %s is not allowed to be used in credentials" % var)
    namespace = {field_id: "EXAMPLE" for field_id in ids}
    tower = _Reserved("cannot directly reference reserved `tower` namespace container")
    files = [name for name in injectors.get("file", {}) if name.startswith("template")]
    if "template" in files:
        if len(files) > 1:
            errors.append("must use multi-file syntax when injecting multiple files")
        tower.filename = "EXAMPLE_FILENAME"
    elif files:
        tower.filename = type("Files", (), {name.split(".")[1]: "EXAMPLE_FILENAME" for name in files})()
    else:
        tower.filename = _Reserved("must define unnamed file injector in order to reference `tower.filename`")
    namespace["tower"] = tower
    environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined)

    def render(where, key, template):
        try:
            environment.from_string(template).render(namespace)
        except UndefinedError as exc:
            errors.append("%s uses an undefined field (%s)" % (key, exc))
        except SecurityError as exc:
            errors.append("encountered unsafe code execution: %s" % exc)
        except TemplateSyntaxError as exc:
            errors.append("syntax error rendering template for %s inside of %s (%s)" % (key, where, exc))

    def walk(key, node):
        if isinstance(node, dict):
            for k, v in node.items():
                render("extra_vars", "a key" if key is None else key, k)
                walk(k if key is None else "%s.%s" % (key, k), v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk("%s[%d]" % (key, i), v)
        else:
            render("extra_vars", key, node)

    for where, injector in injectors.items():
        if where == "extra_vars":
            walk(None, injector)
        else:
            for key, template in injector.items():
                render(where, key, template)
    return errors


def injected_extra_vars(ctype, inputs):
    """The extra vars a credential of the type gives a job (CredentialType.inject_credential): only fields with a
    value enter the template namespace, and a template renders a missing one as "" (no StrictUndefined there)."""
    namespace = {key: value for key, value in inputs.items() if isinstance(value, bool) or len(value)}
    environment = ImmutableSandboxedEnvironment()

    def build(node):
        if isinstance(node, dict):
            return {build(k): build(v) for k, v in node.items()}
        if isinstance(node, list):
            return [build(v) for v in node]
        return environment.from_string(node).render(**namespace)

    return build(ctype.get("injectors", {}).get("extra_vars", {}))


# ---------------------------------------------------------------- the collection's side

def takes(name, value):
    """True when the plan's conversion of the variable (Ansible's, with the spec's type and choices) takes value."""
    return _convert(name, value)[0]


def survey_spec_problems(survey):
    """Survey questions that the collection would not take: an unknown variable, a possible answer its type or
    choices refuse, a secret asked in anything but a password question (secrets belong in credentials)."""
    problems = []
    for item in survey["spec"]:
        name = item["variable"]
        if name not in OPTIONS:
            problems.append("%s is no variable of roles/defaults/meta/argument_specs.yml" % name)
            continue
        if name in SECRETS and item["type"] != "password":
            problems.append("%s is a secret (no_log) asked in a %s question" % (name, item["type"]))
        if item["type"] in ("multiplechoice", "multiselect"):
            choices = _lines(item["choices"]) if isinstance(item["choices"], str) else item["choices"]
            samples = [[c] for c in choices] if item["type"] == "multiselect" else choices
        elif item["type"] == "integer":
            low, high = item.get("min"), item.get("max")
            samples = [v for v in (low, high) if v not in ("", None)] or [1]
        elif item["type"] == "float":
            samples = [float(v) for v in (item.get("min"), item.get("max")) if v not in ("", None)] or [0.5]
        else:
            samples = ["node5,node6"]
        problems += ["%s does not take %r, a possible answer" % (name, v) for v in samples if not takes(name, v)]
    return problems


def credential_spec_problems(types):
    """Credential types that do not match the collection: an injected extra var that is no variable, or that is
    not its field's own name; a secret field of a variable that is not no_log, or the reverse; a no_log variable no
    secret field gives; a variable two types give."""
    problems, given = [], {}
    for ctype in types.values():
        fields = {field["id"]: field for field in ctype["inputs"].get("fields", [])}
        for name, template in ctype["injectors"].get("extra_vars", {}).items():
            if name not in OPTIONS:
                problems.append("%s injects %s, no variable of the spec" % (ctype["name"], name))
                continue
            if not isinstance(template, str) or not re.fullmatch(r"\{\{ *%s *\}\}" % re.escape(name), template):
                problems.append("%s injects %s from %r, not from its field %s" % (ctype["name"], name, template, name))
                continue
            field = fields.get(name)
            if field is None:
                continue  # credential_type_errors names the unknown field
            if field.get("type", "string") != "string" or not takes(name, "EXAMPLE"):
                problems.append("%s injects text into %s, of type %s" % (ctype["name"], name, OPTIONS[name].get("type")))
            if bool(field.get("secret")) != (name in SECRETS):
                problems.append("%s: field %s is %smarked secret, but the spec %s it no_log" % (
                    ctype["name"], name, "" if field.get("secret") else "not ", "marks" if name in SECRETS else "does not mark"))
            if name in given:
                problems.append("%s is injected by both %s and %s" % (name, given[name], ctype["name"]))
            given[name] = ctype["name"]
    problems += ["secret %s comes from no credential type" % name for name in sorted(SECRETS - set(given))]
    return problems


def import_of(playbook):
    """The collection playbook a pattern playbook imports. It does nothing else, but for guards before the import:
    plays on localhost that only assert (a survey's confirmation)."""
    plays = yaml.safe_load(playbook.read_text())
    assert isinstance(plays, list) and plays, "%s: no play" % playbook
    *guards, last = plays
    assert set(last) == {"name", "ansible.builtin.import_playbook"}, "%s: the last play imports, only" % playbook
    for guard in guards:
        assert guard["hosts"] == "localhost" and guard["gather_facts"] is False, guard
        assert {key for task in guard["tasks"] for key in task} <= {"name", "ansible.builtin.assert"}, guard
    return last["ansible.builtin.import_playbook"]


def playbook_problems(pattern, pattern_dir):
    """Job templates whose playbook is not in the pattern's playbooks folder or imports no collection playbook."""
    problems = []
    for jt in pattern["aap_resources"]["controller_job_templates"]:
        playbook = pattern_dir / "playbooks" / jt["playbook"]
        if "/" in jt["playbook"] or not playbook.is_file():
            problems.append("%s: no playbook %s in %s/playbooks" % (jt["name"], jt["playbook"], pattern_dir.name))
            continue
        target = import_of(playbook)
        match = re.fullmatch(r"llmserve\.cluster\.([a-z_]+)", target)
        if not match or not (REPO / "playbooks" / (match.group(1) + ".yml")).is_file():
            problems.append("%s: %s imports %s, no playbook of llmserve.cluster" % (jt["name"], jt["playbook"], target))
    return problems


# ---------------------------------------------------------------- the pattern's layout (pattern specification)

def test_the_pattern_has_the_layout_the_pattern_service_and_ansible_lint_expect():
    assert PATTERN["name"] == PATTERN_DIR.name and re.fullmatch(r"[a-z0-9_]{1,64}", PATTERN["name"])
    assert (PATTERN_DIR / "README.md").is_file() and (PATTERN_DIR / "playbooks").is_dir()
    for key in ("schema_version", "name", "title", "description", "short_description", "aap_resources"):
        assert isinstance(PATTERN[key], (str, dict)) and PATTERN[key], key
    assert len(PATTERN["title"]) <= 64 and not PATTERN["short_description"].endswith(".")
    resources = PATTERN["aap_resources"]
    assert {"name", "description"} <= set(resources["controller_project"])
    ee = resources["controller_execution_environment"]
    assert {"name", "description", "image_name"} <= set(ee) and ee.get("pull") in ("always", "missing", "never")
    labels = resources["controller_labels"]
    assert len(labels) == len(set(labels)) >= 1
    names = [jt["name"] for jt in JOB_TEMPLATES]
    assert len(names) == len(set(names)) and all(len(n) <= 200 for n in names)
    # one primary job template (pattern specification: several playbooks need one), and it is the deploy
    assert [jt["name"] for jt in JOB_TEMPLATES if jt.get("primary")] == ["llmserve.cluster / Deploy"]
    # ansible-lint's pattern rule reads the first job template's playbook
    assert (PATTERN_DIR / "playbooks" / JOB_TEMPLATES[0]["playbook"]).is_file()
    for jt in JOB_TEMPLATES:
        assert {"name", "description", "playbook"} <= set(jt), jt["name"]
        assert jt["execution_environment"] == ee["name"], jt["name"]
        assert set(jt["labels"]) <= set(labels) and len(jt["labels"]) == len(set(jt["labels"])), jt["name"]
        # the plan reads the whole inventory; AWX passes survey answers only (ask_variables_on_launch off)
        assert jt["ask_limit_on_launch"] is False and jt["ask_variables_on_launch"] is False, jt["name"]
        assert jt["ask_inventory_on_launch"] is True and jt["ask_credential_on_launch"] is True, jt["name"]
        assert jt["allow_simultaneous"] is False and jt["job_type"] == "run", jt["name"]
        assert jt["survey_enabled"] is ("survey" in jt), jt["name"]
        for question in jt.get("survey", {}).get("spec", []):
            assert pattern_question_errors(question) == [], jt["name"]


def test_the_job_templates_are_deploy_upgrade_scale_status_and_clean_up_each_on_its_collection_playbook():
    runs = {jt["name"].split(" / ")[1]: import_of(PATTERN_DIR / "playbooks" / jt["playbook"]) for jt in JOB_TEMPLATES}
    assert runs == {"Deploy": "llmserve.cluster.site", "Upgrade": "llmserve.cluster.upgrade",
                    "Scale out": "llmserve.cluster.site", "Scale in": "llmserve.cluster.remove",
                    "Status": "llmserve.cluster.status", "Clean up": "llmserve.cluster.clean_up"}
    assert playbook_problems(PATTERN, PATTERN_DIR) == []
    # every pattern playbook is some job template's
    assert {p.name for p in (PATTERN_DIR / "playbooks").glob("*.yml")} == {jt["playbook"] for jt in JOB_TEMPLATES}


def test_status_and_clean_up_are_the_stages_site_yml_runs_with_their_tags():
    """An imported playbook takes no tags, so the pattern imports the stage playbooks that site.yml imports."""
    site = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    imports = {play["ansible.builtin.import_playbook"]: play.get("tags", []) for play in site}
    assert imports["llmserve.cluster.status"] == []
    assert imports["llmserve.cluster.clean_up"] == ["never", "clean_up"]
    for stage, tag in (("status", "status"), ("clean_up", "clean_up")):
        plays = yaml.safe_load((REPO / "playbooks" / (stage + ".yml")).read_text())
        assert any(tag in play.get("tags", []) for play in plays), stage


def test_scale_in_stops_before_anything_changes_unless_the_survey_confirmed(tmp_path):
    """AWX cannot answer remove.yml's question (ansible-runner runs the job under a pseudo-terminal, so it would wait):
    the pattern's remove.yml checks the survey's llmserve_confirm first, and a failed check ends the whole run."""
    plays = yaml.safe_load((PATTERN_DIR / "playbooks" / "remove.yml").read_text())
    assert plays[-1]["ansible.builtin.import_playbook"] == "llmserve.cluster.remove" and len(plays) == 2
    marker = {"name": "Stand-in for remove.yml", "hosts": "all", "gather_facts": False,
              "tasks": [{"name": "Remove", "ansible.builtin.debug": {"msg": "REMOVE-RAN"}}]}
    (tmp_path / "remove.yml").write_text(yaml.safe_dump(plays[:-1] + [marker], sort_keys=False))
    env = {"ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "PATH": os.environ["PATH"],
           "HOME": str(tmp_path)}
    ran = {}
    for answer in ("no", "yes", None):
        extra = [] if answer is None else ["-e", "llmserve_confirm=" + answer]
        res = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "node5,", "-c", "local",
                              str(tmp_path / "remove.yml")] + extra, capture_output=True, text=True, timeout=300,
                             cwd=tmp_path, env=env)
        ran[answer] = (res.returncode, "REMOVE-RAN" in res.stdout, "not confirmed; nothing was changed" in res.stdout)
    assert ran == {"no": (2, False, True), "yes": (0, True, False), None: (2, False, True)}, ran


# ---------------------------------------------------------------- surveys: AWX takes them, the collection too

@pytest.mark.parametrize("jt", SURVEYED, ids=[jt["name"] for jt in SURVEYED])
def test_awx_takes_each_survey(jt):
    assert survey_errors(jt["survey"]) == []


@pytest.mark.parametrize("jt", SURVEYED, ids=[jt["name"] for jt in SURVEYED])
def test_each_default_survives_a_launch_and_each_answer_reaches_a_variable_of_its_type(jt):
    for item in jt["survey"]["spec"]:
        if "default" in item:
            # a default a launch refuses is silently not passed (SurveyJobTemplateMixin._update_unified_job_kwargs)
            assert answer_errors(item, item["default"]) == [], item["variable"]
    assert survey_spec_problems(jt["survey"]) == []


def test_the_survey_files_are_the_surveys_of_pattern_json():
    files = {path.stem: yaml.safe_load(path.read_text()) for path in (PATTERN_DIR / "template_surveys").glob("*.yml")}
    used = {}
    for jt in SETUP["controller_templates"]:
        if "survey_spec" in jt:
            used[jt["name"]] = re.search(r"/template_surveys/([a-z_]+)\.yml'", jt["survey_spec"]).group(1)
    assert sorted(used.values()) == sorted(files)
    for jt in SURVEYED:
        assert files[used[jt["name"]]] == jt["survey"], jt["name"]


def test_the_playbook_knobs_are_in_the_spec_with_their_defaults():
    assert OPTIONS["llmserve_upgrade_batch"]["type"] == "int" and OPTIONS["llmserve_upgrade_batch"]["default"] == 1
    assert OPTIONS["llmserve_upgrade_drain_timeout"]["type"] == "int"
    assert OPTIONS["llmserve_upgrade_drain_timeout"]["default"] == 300
    assert OPTIONS["llmserve_remove"]["type"] == "raw" and OPTIONS["llmserve_confirm"]["type"] == "str"
    assert OPTIONS["llmserve_full_run"]["type"] == "bool"


def test_the_surveys_ask_what_the_playbooks_read():
    asked = {jt["playbook"]: {q["variable"]: q for q in jt["survey"]["spec"]} for jt in SURVEYED}
    assert set(asked["upgrade.yml"]) == {"llmserve_upgrade_batch", "llmserve_upgrade_drain_timeout"}
    assert asked["upgrade.yml"]["llmserve_upgrade_batch"]["min"] == 1
    remove = asked["remove.yml"]
    assert remove["llmserve_remove"]["type"] == "text" and remove["llmserve_remove"]["required"] is True
    assert remove["llmserve_confirm"]["choices"] == ["no", "yes"] and remove["llmserve_confirm"]["default"] == "no"
    assert asked["deploy.yml"]["llmserve_full_run"]["choices"] == ["false", "true"]
    # what the survey's answers become for the plan (Ansible's conversion, as for an inventory value)
    assert _convert("llmserve_full_run", "false") == (True, False)
    assert _convert("llmserve_xinference_remove_home", "true") == (True, True)
    # and each is read somewhere in the collection's playbooks, roles or plugins (not only documented)
    code = "".join(path.read_text() for folder in ("playbooks", "roles", "plugins") for path in (REPO / folder).rglob("*")
                   if path.is_file() and path.suffix in (".yml", ".py", ".j2") and path.name != "argument_specs.yml")
    for variables in asked.values():
        for name in variables:
            assert name in code, name


# ---------------------------------------------------------------- setup.yml (pattern loader) agrees with pattern.json

def test_setup_yml_describes_the_same_job_templates_labels_and_credential_types():
    prefix = "extensions/patterns/%s/playbooks/" % PATTERN["name"]
    setup = {jt["name"]: jt for jt in SETUP["controller_templates"]}
    assert list(setup) == [jt["name"] for jt in JOB_TEMPLATES]
    for jt in JOB_TEMPLATES:
        mine = setup[jt["name"]]
        assert mine["playbook"] == prefix + jt["playbook"], jt["name"]
        assert mine["project"] == PATTERN["aap_resources"]["controller_project"]["name"]
        for key, value in jt.items():
            if key not in ("playbook", "primary", "survey"):
                assert mine[key] == value, (jt["name"], key)
        assert ("survey_spec" in mine) is ("survey" in jt), jt["name"]
    assert [label["name"] for label in SETUP["controller_labels"]] == PATTERN["aap_resources"]["controller_labels"]
    [project] = SETUP["controller_projects"]
    assert project["name"] == PATTERN["aap_resources"]["controller_project"]["name"]
    [ee] = SETUP["controller_execution_environments"]
    assert ee["name"] == PATTERN["aap_resources"]["controller_execution_environment"]["name"]
    loaded = [re.search(r"/credential_types/([a-z_]+)\.yml'", item).group(1) for item in SETUP["controller_credential_types"]]
    assert sorted(loaded) == sorted(CREDENTIAL_TYPES)


# ---------------------------------------------------------------- credential types: AWX takes them, the collection too

@pytest.mark.parametrize("stem", sorted(CREDENTIAL_TYPES))
def test_awx_takes_each_credential_type(stem):
    assert credential_type_errors(CREDENTIAL_TYPES[stem]) == []


def test_the_credential_types_give_every_secret_and_the_registry_login_as_the_variables_of_the_spec():
    assert credential_spec_problems(CREDENTIAL_TYPES) == []
    registry, secrets = CREDENTIAL_TYPES["llmserve_registry"], CREDENTIAL_TYPES["llmserve_cluster_secrets"]
    assert registry["name"] == "llmserve registry" and secrets["name"] == "llmserve cluster secrets"
    assert set(registry["injectors"]["extra_vars"]) == {"llmserve_registry_url", "llmserve_registry_username",
                                                        "llmserve_registry_password"}
    assert set(secrets["injectors"]["extra_vars"]) == SECRETS - {"llmserve_registry_password"}
    assert all(field.get("secret") is True for field in secrets["inputs"]["fields"])
    assert secrets["inputs"].get("required", []) == []


def test_no_survey_asks_a_secret():
    asked = {q["variable"] for jt in SURVEYED for q in jt["survey"]["spec"]}
    assert asked & SECRETS == set()


def test_a_credential_injects_its_values_and_an_empty_field_as_an_empty_string():
    """docs/awx.md says so: an unfilled field still overrides the inventory's value, with "" (unset to the plan)."""
    secrets = CREDENTIAL_TYPES["llmserve_cluster_secrets"]
    injected = injected_extra_vars(secrets, {"llmserve_api_key": "sk-test"})
    assert injected["llmserve_api_key"] == "sk-test"
    assert set(injected) == set(secrets["injectors"]["extra_vars"])
    assert {v for k, v in injected.items() if k != "llmserve_api_key"} == {""}
    login = injected_extra_vars(CREDENTIAL_TYPES["llmserve_registry"], {
        "llmserve_registry_url": "registry.example.com:5000", "llmserve_registry_username": "u",
        "llmserve_registry_password": "p{{ not templated }}"})
    assert login == {"llmserve_registry_url": "registry.example.com:5000", "llmserve_registry_username": "u",
                     "llmserve_registry_password": "p{{ not templated }}"}


# ---------------------------------------------------------------- the validators refuse broken data

def _deploy_survey():
    return copy.deepcopy(next(jt["survey"] for jt in SURVEYED if jt["playbook"] == "deploy.yml"))


def _question(**changes):
    item = {"type": "text", "question_name": "q", "question_description": "d", "variable": "llmserve_model",
            "required": False}
    item.update(changes)
    return {"name": "s", "description": "d", "spec": [item]}


@pytest.mark.parametrize("survey, error", [
    (_question(type="multiplechoice", choices=["false", "true"], default="maybe"), "default choice must be answered"),
    (_question(type="multiselect", choices=["a", "b"], default="a\nc"), "default choice must be answered"),
    (_question(type="multiplechoice", choices=["a", "b"], default="a\nb"), "can only have one default"),
    (_question(type="multiplechoice"), "must specify choices"),
    (_question(type="integer", default="1"), "expected to be integer"),
    (_question(type="float", default="0.5"), "expected to be float"),
    (_question(type="text", default=3), "expected to be text"),
    (_question(type="checkbox"), "not one of the allowed question types"),
    (_question(type="integer", min="1"), "min limit in survey question 0 expected to be integer"),
    (_question(type="text", default="$encrypted$"), "reserved keyword for password question defaults"),
    (_question(type="password", default="$encrypted$foo"), "may not be used for new default"),
    (_question(required="yes"), "'required' in survey question 0 has the wrong type"),
    ({"name": "s", "description": "d", "spec": []}, "doesn't contain any items"),
    ({"name": "s", "spec": [{}]}, "field 'description' is missing"),
    ({"name": "s", "description": "d", "spec": {"a": 1}}, "expected list for field 'spec'"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_the_survey_validator_refuses_what_awx_refuses(survey, error):
    errors = survey_errors(survey)
    assert errors and error in errors[0], errors


def test_the_survey_validator_refuses_a_duplicate_variable_and_a_missing_key():
    survey = _deploy_survey()
    survey["spec"].append(copy.deepcopy(survey["spec"][0]))
    assert "duplicated in survey question 1" in survey_errors(survey)[0]
    survey = _deploy_survey()
    del survey["spec"][0]["variable"]
    assert survey_errors(survey) == ["'variable' missing from survey question 0"]


def test_a_launch_refuses_answers_out_of_type_or_bounds():
    upgrade = next(jt["survey"] for jt in SURVEYED if jt["playbook"] == "upgrade.yml")
    batch = next(q for q in upgrade["spec"] if q["variable"] == "llmserve_upgrade_batch")
    assert answer_errors(batch, 2) == []
    assert "too small" in answer_errors(batch, 0)[0]
    assert "expected to be an integer" in answer_errors(batch, "2")[0]
    assert "expected to be an integer" in answer_errors(batch, True)[0]
    full_run = _deploy_survey()["spec"][0]
    assert "expected to be one of" in answer_errors(full_run, "yes")[0]


def test_the_pattern_question_check_refuses_what_the_pattern_schema_refuses():
    assert pattern_question_errors(_question(type="integer", default=1)["spec"][0])
    assert pattern_question_errors(_question(variable="LLMSERVE_MODEL")["spec"][0])
    question = _question()["spec"][0]
    del question["question_description"]
    assert pattern_question_errors(question)


def test_the_survey_checks_refuse_an_unknown_variable_a_wrong_type_and_a_secret_in_clear():
    assert survey_spec_problems(_question(variable="llmserve_no_such_knob")) == [
        "llmserve_no_such_knob is no variable of roles/defaults/meta/argument_specs.yml"]
    assert "does not take 'maybe'" in survey_spec_problems(
        _question(variable="llmserve_full_run", type="multiplechoice", choices=["true", "maybe"]))[0]
    assert "does not take 'node5,node6'" in survey_spec_problems(_question(variable="llmserve_upgrade_batch"))[0]
    assert survey_spec_problems(_question(variable="llmserve_accelerator", type="multiplechoice", choices=["nvidia", "cpu"])) == []
    assert survey_spec_problems(_question(variable="llmserve_accelerator", type="multiplechoice", choices=["tpu"]))
    assert survey_spec_problems(_question(variable="llmserve_api_key")) == [
        "llmserve_api_key is a secret (no_log) asked in a text question"]
    assert survey_spec_problems(_question(variable="llmserve_api_key", type="password")) == []


def _broken(stem, change):
    ctype = copy.deepcopy(CREDENTIAL_TYPES[stem])
    change(ctype)
    return ctype


def _field(ctype, field_id):
    return next(field for field in ctype["inputs"]["fields"] if field["id"] == field_id)


@pytest.mark.parametrize("change, error", [
    (lambda t: t["injectors"]["extra_vars"].update(llmserve_registry_url="{{ registry_host }}"), "undefined field"),
    (lambda t: t["injectors"].update(env={"REGISTRY": "{{ tower }}"}), "reserved `tower` namespace"),
    (lambda t: t["injectors"].update(env={"REGISTRY": "{{ tower.filename }}"}), "unnamed file injector"),
    (lambda t: t["injectors"].update(env={"REGISTRY": "{{ llmserve_registry_url"}), "syntax error"),
    (lambda t: t["injectors"].update(env={"ANSIBLE_REMOTE_USER": "{{ llmserve_registry_username }}"}), "affect Ansible"),
    (lambda t: t["injectors"].update(env={"PATH": "/tmp"}), "not allowed to be used in credentials"),
    (lambda t: t["injectors"].update(files={"template": "x"}), "injectors: Additional properties"),
    (lambda t: t["injectors"]["extra_vars"].update({"bad-name": "x"}), "injectors:"),
    (lambda t: t["injectors"].update(file={"template": "a", "template.b": "b"}), "multi-file syntax"),
    (lambda t: t["inputs"]["fields"].append(dict(_field(t, "llmserve_registry_url"))), "field IDs must be unique"),
    (lambda t: t["inputs"]["fields"].append({"id": "tower", "label": "t"}), '"tower" is a reserved field name'),
    (lambda t: t["inputs"]["fields"].append({"id": "my-field", "label": "t"}), "does not match"),
    (lambda t: t["inputs"]["fields"].append({"id": "flag", "label": "f", "type": "boolean", "secret": True}),
     "secret not allowed for boolean type (flag)"),
    (lambda t: t["inputs"]["fields"].append({"id": "flag", "label": "f", "type": "boolean", "default": "no"}),
     "no is not a boolean"),
    (lambda t: t["inputs"]["fields"].append({"id": "x", "label": "x", "hidden": True}), "Additional properties"),
    (lambda t: t["inputs"]["fields"].append({"id": "x"}), "'label' is a required property"),
    (lambda t: t["inputs"]["fields"].append({"id": "x", "label": "x", "ask_at_runtime": True}), "ask_at_runtime"),
    (lambda t: t["inputs"].update(dependencies={"a": ["b"]}), "'dependencies' is not supported"),
    (lambda t: t["inputs"]["required"].append("llmserve_registry_token"), "which is no field"),
    (lambda t: t.update(kind="ssh"), "kind must be 'cloud' or 'net'"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_the_credential_type_validator_refuses_what_awx_refuses(change, error):
    errors = credential_type_errors(_broken("llmserve_registry", change))
    assert any(error in e for e in errors), errors


def test_the_credential_checks_refuse_an_unmarked_secret_a_stray_variable_and_a_missing_secret():
    def unmark(t):
        del _field(t, "llmserve_registry_password")["secret"]
    types = dict(CREDENTIAL_TYPES, llmserve_registry=_broken("llmserve_registry", unmark))
    assert credential_spec_problems(types) == [
        "llmserve registry: field llmserve_registry_password is not marked secret, but the spec marks it no_log"]

    def mark(t):
        _field(t, "llmserve_registry_url")["secret"] = True
    types = dict(CREDENTIAL_TYPES, llmserve_registry=_broken("llmserve_registry", mark))
    assert "is marked secret, but the spec does not mark it no_log" in credential_spec_problems(types)[0]

    def drop(t):
        t["inputs"]["fields"] = [f for f in t["inputs"]["fields"] if f["id"] != "llmserve_ray_auth_token"]
        del t["injectors"]["extra_vars"]["llmserve_ray_auth_token"]
    types = dict(CREDENTIAL_TYPES, llmserve_cluster_secrets=_broken("llmserve_cluster_secrets", drop))
    assert credential_spec_problems(types) == ["secret llmserve_ray_auth_token comes from no credential type"]

    def stray(t):
        t["injectors"]["extra_vars"]["llmserve_no_such_secret"] = "{{ llmserve_api_key }}"
    types = dict(CREDENTIAL_TYPES, llmserve_cluster_secrets=_broken("llmserve_cluster_secrets", stray))
    assert credential_spec_problems(types) == ["llmserve cluster secrets injects llmserve_no_such_secret, no variable of the spec"]

    def crossed(t):
        t["injectors"]["extra_vars"]["llmserve_api_key"] = "{{ llmserve_gpustack_token }}"
    types = dict(CREDENTIAL_TYPES, llmserve_cluster_secrets=_broken("llmserve_cluster_secrets", crossed))
    assert "not from its field llmserve_api_key" in credential_spec_problems(types)[0]

    types = dict(CREDENTIAL_TYPES, again=copy.deepcopy(CREDENTIAL_TYPES["llmserve_registry"]))
    assert "injected by both" in credential_spec_problems(types)[0]


def test_the_playbook_check_refuses_a_missing_playbook_and_an_unknown_import(tmp_path):
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "deploy.yml").write_text(
        "- name: x\n  ansible.builtin.import_playbook: llmserve.cluster.no_such_stage\n")
    pattern = {"aap_resources": {"controller_job_templates": [
        {"name": "a", "playbook": "deploy.yml"}, {"name": "b", "playbook": "gone.yml"},
        {"name": "c", "playbook": "../../../playbooks/site.yml"}]}}
    assert playbook_problems(pattern, tmp_path) == [
        "a: deploy.yml imports llmserve.cluster.no_such_stage, no playbook of llmserve.cluster",
        "b: no playbook gone.yml in %s/playbooks" % tmp_path.name,
        "c: no playbook ../../../playbooks/site.yml in %s/playbooks" % tmp_path.name]
