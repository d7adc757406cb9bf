"""Calls a running Régua service through a Python client generated from its OpenAPI document
(openapi-python-client), so the document is checked the way a user's generated client uses it.

usage: python3 check.py CLIENT_PARENT_DIR BASE_URL CUSTOMER_JSON_FILE
Prints one JSON object with what the calls answered; exits non-zero on any failure.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

from client import Client  # noqa: E402  (the generated package)
from client.api.campaigns import decide_all, get_campaign, list_campaigns  # noqa: E402
from client.api.plugins import evaluate, get_plugin, healthz, list_plugins  # noqa: E402
from client.models import DecideRequest, EvaluateRequest  # noqa: E402

base, customer_file = sys.argv[2], sys.argv[3]
customer = json.load(open(customer_file))
api = Client(base_url=base, raise_on_unexpected_status=True)


def body(response):
    if response.status_code != 200:
        raise SystemExit(f"{response.status_code}: {response.content!r}")
    return json.loads(response.content)


out = {
    "healthz": body(healthz.sync_detailed(client=api)),
    "plugins": [p["name"] for p in body(list_plugins.sync_detailed(client=api))["plugins"]],
    "lapsed": body(get_plugin.sync_detailed("lapsed", client=api))["kind"],
    "evaluate": body(
        evaluate.sync_detailed(
            "lapsed",
            client=api,
            body=EvaluateRequest.from_dict(
                {"customer": customer, "now": "2025-03-11T12:00:00Z", "params": {"days": 30}}
            ),
        )
    ),
    "campaigns": [c["code"] for c in body(list_campaigns.sync_detailed(client=api))["campaigns"]],
    "campaign": body(get_campaign.sync_detailed("RET-2025-030", client=api))["code"],
    "decide": body(
        decide_all.sync_detailed(
            client=api,
            body=DecideRequest.from_dict({"customer": customer, "now": "2025-03-11T12:00:00Z"}),
        )
    ),
}
print(json.dumps(out))
