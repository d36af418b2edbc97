"""xinference_models, run by ansible against a stand-in Xinference supervisor (its REST contract as xinference 4.1.0
serves it: GET/POST /v1/models, DELETE /v1/models/{uid}, POST/DELETE /v1/model_registrations/...), which checks the
admin's bearer token. The real supervisor is driven by molecule's xinference scenario."""
import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from test_image_pull import JSONHandler, run_module

TOKEN = "admin-session-0123"


class FakeSupervisor:
    def __init__(self):
        self.models = {}          # uid -> launch body
        self.registrations = {}   # (type, name) -> registration
        self.calls = []
        self.refuse_launch = None
        fake = self

        class Handler(JSONHandler):

            def handle_one(self, method):
                fake.calls.append((method, self.path))
                if self.headers.get("Authorization") != "Bearer " + TOKEN:
                    return self.reply(401, {"detail": "Not authenticated"})
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                parts = self.path.strip("/").split("/")
                if parts[:2] == ["v1", "models"]:
                    if method == "GET":
                        return self.reply(200, {"object": "list", "data": [
                            {"id": uid, "object": "model", "model_name": m["model_name"]} for uid, m in fake.models.items()]})
                    if method == "POST":
                        if fake.refuse_launch:
                            return self.reply(400, {"detail": fake.refuse_launch})
                        fake.models[body["model_uid"]] = body
                        return self.reply(200, {"model_uid": body["model_uid"]})
                    if method == "DELETE" and parts[2] in fake.models:
                        del fake.models[parts[2]]
                        return self.reply(200, None)
                if parts[:2] == ["v1", "model_registrations"]:
                    if method == "POST":
                        registration = json.loads(body["model"])
                        key = (parts[2], registration["model_name"])
                        if key in fake.registrations:
                            return self.reply(400, {"detail": "Model name conflicts with existing model"})
                        fake.registrations[key] = registration
                        return self.reply(200, None)
                    if method == "DELETE" and (parts[2], parts[3]) in fake.registrations:
                        del fake.registrations[parts[2], parts[3]]
                        return self.reply(200, None)
                return self.reply(404, {"detail": "not found"})

            def do_GET(self):
                self.handle_one("GET")

            def do_POST(self):
                self.handle_one("POST")

            def do_DELETE(self):
                self.handle_one("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def changes(self):
        return [c for c in self.calls if c[0] != "GET"]


@pytest.fixture
def supervisor():
    fake = FakeSupervisor()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


SMOL = {"model_name": "smollm2", "model_family": "llama-3.1-instruct", "model_specs": []}


def model(uid, digest, registration=None, **launch):
    return dict(uid=uid, digest=digest, registration=registration,
                launch=dict(dict(model_name=uid, model_uid=uid, model_type="LLM", enable_virtual_env=False), **launch))


def apply(tmp_path, supervisor, models, check_mode=False, token=TOKEN):
    args = dict(url=supervisor.url, token=token, models=models, record=str(tmp_path / "record" / "models.json"))
    return run_module("llmserve.cluster.xinference_models", args, tmp_path, check_mode)


def test_models_launch_once_and_a_changed_spec_relaunches_that_model_only(tmp_path, supervisor):
    wanted = [model("smollm2", "d1", SMOL, model_engine="transformers", worker_ip="10.0.0.2"),
              model("emb", "e1", model_type="embedding")]
    rc, would = apply(tmp_path, supervisor, wanted, check_mode=True)
    assert rc == 0 and would["changed"] is True and would["launched"] == ["smollm2", "emb"], would
    assert supervisor.changes() == [] and not (tmp_path / "record").exists(), "check mode changes nothing"
    rc, first = apply(tmp_path, supervisor, wanted)
    assert rc == 0 and first["launched"] == ["smollm2", "emb"] and first["terminated"] == [], first
    assert supervisor.models["smollm2"]["worker_ip"] == "10.0.0.2"
    assert supervisor.registrations == {("LLM", "smollm2"): SMOL}
    assert json.loads((tmp_path / "record" / "models.json").read_text()) == {"smollm2": "d1", "emb": "e1"}
    for check_mode in (True, False):
        rc, again = apply(tmp_path, supervisor, wanted, check_mode=check_mode)
        assert rc == 0 and again["changed"] is False and again["unchanged"] == ["smollm2", "emb"], again
    supervisor.calls.clear()
    changed = [model("smollm2", "d2", SMOL, model_engine="llama.cpp"), wanted[1]]
    rc, result = apply(tmp_path, supervisor, changed)
    assert rc == 0 and result["terminated"] == ["smollm2"] and result["launched"] == ["smollm2"], result
    assert result["diff"] == {"before": {"smollm2": "d1", "emb": "e1"}, "after": {"smollm2": "d2", "emb": "e1"}}
    assert supervisor.changes() == [("DELETE", "/v1/models/smollm2"), ("DELETE", "/v1/model_registrations/LLM/smollm2"),
                                    ("POST", "/v1/model_registrations/LLM"), ("POST", "/v1/models")]
    assert supervisor.models["smollm2"]["model_engine"] == "llama.cpp"


def test_a_model_no_longer_wanted_is_terminated_and_others_are_left_alone(tmp_path, supervisor):
    apply(tmp_path, supervisor, [model("a", "1"), model("b", "1")])
    supervisor.models["by-hand"] = {"model_name": "by-hand"}
    rc, result = apply(tmp_path, supervisor, [model("a", "1")])
    assert rc == 0 and result["terminated"] == ["b"] and result["launched"] == [], result
    assert set(supervisor.models) == {"a", "by-hand"}
    # a model that died is launched again
    del supervisor.models["a"]
    rc, result = apply(tmp_path, supervisor, [model("a", "1")])
    assert rc == 0 and result["launched"] == ["a"], result


def test_a_refused_launch_names_the_model_and_says_what_xinference_said(tmp_path, supervisor):
    supervisor.refuse_launch = "Model not found in the model list, uid: tiny"
    rc, result = apply(tmp_path, supervisor, [model("tiny", "1", model_engine="transformers")])
    assert rc != 0
    assert result["msg"] == ("Xinference did not launch the model tiny (uid tiny): HTTP 400: Model not found in the "
                             "model list, uid: tiny")
    rc, result = apply(tmp_path, supervisor, [model("tiny", "1")], token="wrong")
    assert rc != 0 and result["msg"] == ("cannot list the models of the Xinference supervisor at %s: HTTP 401: Not "
                                         "authenticated" % supervisor.url)
    assert "wrong" not in json.dumps(result)
