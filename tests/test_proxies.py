"""The reverse proxies of deploy/ keep no access log: WeChat puts the resident's openid in the callback's query
string, and a reporter's address is itself sensitive (nginx and Caddy said so; the Kubernetes ingress did not)."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO


def test_nginx_and_caddy_keep_no_access_log() -> None:
    nginx = (REPO / "deploy/nginx/qinglian.conf").read_text(encoding="utf-8")
    assert re.findall(r"^\s*access_log\s+([^;]+);", nginx, flags=re.M) == ["off"]
    caddy = (REPO / "deploy/caddy/Caddyfile").read_text(encoding="utf-8")
    assert not re.search(r"^\s*log\b", caddy, flags=re.M)


def test_every_kubernetes_ingress_turns_the_controllers_access_log_off() -> None:
    """ingress-nginx writes an access line (client address, request line with its query string) for every request
    unless the Ingress says otherwise."""
    documents = list(yaml.safe_load_all((REPO / "deploy/kubernetes/ingress.yaml").read_text(encoding="utf-8")))
    ingresses = [doc for doc in documents if doc and doc.get("kind") == "Ingress"]
    assert len(ingresses) == 2
    assert {doc["metadata"]["name"]: doc["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/enable-access-log")
            for doc in ingresses} == {"qinglian": "false", "qinglian-metrics-blocked": "false"}
