"""The remote settings: parsed in one place, with problems that never show the values behind them."""
import json

from diffill.lsp.server import settings as settings_mod
from diffill.lsp.server.remote import transport
from diffill.lsp.server.remote.config import RemoteSettings, is_loopback, parse_remote

SECRET = "nvapi-Zq8xv0aL3kPmW7sTy2bR9cJ4"


def test_the_contract_names_and_their_defaults():
    cfg, problems = settings_mod.parse({"backend": "remote", "remote": {
        "url": "https://gpu1.example:8000/v1", "model": None, "endpoint": "chat", "apiKeyEnv": "NVIDIA_API_KEY"}})
    assert problems == []
    assert cfg.backend == "remote"
    r = cfg.remote
    assert (r.url, r.model, r.endpoint, r.api_key_env) == ("https://gpu1.example:8000/v1", None, "chat", "NVIDIA_API_KEY")
    assert settings_mod.DEFAULTS.backend == "local"
    assert settings_mod.DEFAULTS.remote == RemoteSettings()
    assert json.loads(json.dumps(settings_mod.describe(cfg)))["remote"]["apiKeyEnv"] == "NVIDIA_API_KEY"


def test_a_partial_update_keeps_the_other_remote_settings():
    first, _ = settings_mod.parse({"backend": "remote", "remote": {"url": "https://a.example/v1", "model": "m"}})
    second, problems = settings_mod.parse({"remote": {"timeoutMs": 2500}}, first)
    assert problems == [] and second.remote.url == "https://a.example/v1" and second.remote.model == "m"
    assert second.remote.timeout_ms == 2500


def test_a_bare_host_gets_the_v1_base_path():
    assert parse_remote({"url": "http://127.0.0.1:8000/"})[0].url == "http://127.0.0.1:8000/v1"
    assert parse_remote({"url": "https://h.example/openai/v1/"})[0].url == "https://h.example/openai/v1"


def test_a_key_put_in_the_settings_is_ignored_and_never_echoed():
    raw = {"backend": "remote", "remote": {"url": "https://h.example/v1", "apiKey": SECRET, "token": SECRET,
                                           "apiKeyEnv": SECRET}}
    cfg, problems = settings_mod.parse(raw)
    text = json.dumps(problems) + repr(cfg) + json.dumps(settings_mod.describe(cfg))
    assert SECRET not in text
    assert any("remote.apiKey is ignored" in p for p in problems)
    assert cfg.remote.api_key_env == "DIFFILL_API_KEY"


def test_credentials_in_the_url_are_refused_without_echoing_them():
    cfg, problems = settings_mod.parse({"remote": {"url": f"https://user:{SECRET}@h.example/v1"}})
    assert cfg.remote.url is None and len(problems) == 1 and SECRET not in problems[0]


def test_https_is_required_except_for_this_machine_or_when_explicitly_allowed():
    assert RemoteSettings(url="http://127.0.0.1:8000/v1").problem() is None
    assert RemoteSettings(url="http://localhost:8000/v1").problem() is None
    assert RemoteSettings(url="http://[::1]:8000/v1").problem() is None
    assert "https" in RemoteSettings(url="http://gpu1.example:8000/v1").problem()
    assert RemoteSettings(url="http://gpu1.example:8000/v1", allow_insecure_http=True).problem() is None
    assert RemoteSettings(url="https://gpu1.example:8000/v1").problem() is None
    assert "remote.url" in RemoteSettings().problem()
    assert RemoteSettings(url="https://h.example/v1", endpoint="chat", prompt_format="clamped").problem()
    assert is_loopback("127.8.0.1") and not is_loopback("10.0.0.1")


def test_bad_values_fall_back_one_by_one():
    cfg, problems = parse_remote({"endpoint": "embeddings", "maxInflight": 50, "stream": "yes", "colour": 1})
    assert cfg.endpoint == "completions" and cfg.max_inflight == 4 and cfg.stream is True
    assert len(problems) == 4 and any("remote.colour" in p for p in problems)


def test_the_key_comes_from_the_named_variable_or_a_key_file(tmp_path):
    cfg = RemoteSettings(url="https://h.example/v1", api_key_env="TEAM_KEY")
    assert transport.load_key(cfg, {"TEAM_KEY": f" {SECRET}\n"})[0] == SECRET
    assert transport.load_key(cfg, {})[0] is None
    f = tmp_path / "key"
    f.write_text(SECRET + "\n")
    from dataclasses import replace
    assert transport.load_key(replace(cfg, api_key_file=str(f)), {})[0] == SECRET
    assert transport.load_key(replace(cfg, api_key_file=str(f)), {"TEAM_KEY": "env-wins"})[0] == "env-wins"


def test_proxies_from_the_environment_but_never_for_loopback():
    env = {"HTTPS_PROXY": "http://proxy.corp:3128", "HTTP_PROXY": "proxy.corp:3129",
           "NO_PROXY": "internal.corp,.lab.example,10.0.0.0/8,gpu9.example:9000"}
    assert transport.proxy_for("https://gpu1.example/v1", env) == "http://proxy.corp:3128"
    assert transport.proxy_for("http://gpu1.example/v1", env) == "http://proxy.corp:3129"
    for url in ("https://127.0.0.1:8000/v1", "https://localhost/v1", "http://[::1]:8000/v1",
                "https://internal.corp/v1", "https://a.internal.corp/v1", "https://x.lab.example/v1",
                "https://10.1.2.3/v1", "https://gpu9.example:9000/v1"):
        assert transport.proxy_for(url, env) is None, url
    assert transport.proxy_for("https://gpu9.example:9001/v1", env) == "http://proxy.corp:3128"
    assert transport.proxy_for("https://gpu1.example/v1", {"NO_PROXY": "*", "HTTPS_PROXY": "http://p:1"}) is None
    assert transport.proxy_for("https://gpu1.example/v1", {"all_proxy": "http://p:1"}) == "http://p:1"
    assert transport.proxy_label("http://user:pw@proxy.corp:3128") == "via proxy proxy.corp:3128"


def test_a_protected_secret_is_blanked_out_of_log_records_of_every_logger(caplog):
    import logging
    transport.protect(SECRET)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("httpcore.http11").debug("header %s", f"Bearer {SECRET}")
        logging.getLogger("diffill.remote").warning("key=%s", SECRET)
    assert SECRET not in caplog.text and caplog.text.count(transport.REDACTED) == 2
