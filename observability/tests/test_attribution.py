"""Sessions, users and clients found in what agents and SDKs already send."""

import json

from proxy.attribution import attribute

CLAUDE_UA = "claude-cli/2.0.31 (external, cli)"


def test_ingate_headers_win_and_properties_are_collected():
    found = attribute(
        {
            "x-ingate-session-id": "s-1",
            "x-ingate-session-path": "/s-1/refactor",
            "x-ingate-session-name": "Refactor auth",
            "x-ingate-user-id": "alice",
            "x-ingate-property-env": "staging",
            "x-ingate-property-feature": "search",
            "x-claude-code-session-id": "ignored",
            "user-agent": CLAUDE_UA,
        },
        {"user": "also-ignored"},
    )
    assert (found.session_id, found.session_path, found.session_name, found.user_id) == (
        "s-1",
        "/s-1/refactor",
        "Refactor auth",
        "alice",
    )
    assert found.properties == {"env": "staging", "feature": "search"}
    assert found.client == "claude-code"


def test_claude_code_session_header_groups_requests_with_no_configuration():
    found = attribute({"x-claude-code-session-id": "8f0e4a4c-1111-2222-3333-444455556666", "user-agent": CLAUDE_UA}, {})
    assert found.session_id == "8f0e4a4c-1111-2222-3333-444455556666"


def test_older_claude_code_session_inside_metadata_user_id():
    user_id = "user_9a8b_account_1f2e3d4c-0000-1111-2222-333344445555_session_6a7b8c9d-aaaa-bbbb-cccc-ddddeeeeffff"
    found = attribute({"user-agent": CLAUDE_UA}, {"metadata": {"user_id": user_id}})
    assert found.session_id == "6a7b8c9d-aaaa-bbbb-cccc-ddddeeeeffff"
    assert found.user_id == "user_9a8b_account_1f2e3d4c-0000-1111-2222-333344445555"


def test_newer_claude_code_metadata_is_a_json_string():
    meta = json.dumps({"device_id": "dev-1", "account_uuid": "acct-7", "session_id": "sess-42"})
    found = attribute({}, {"metadata": {"user_id": meta}})
    assert (found.session_id, found.user_id) == ("sess-42", "acct-7")


def test_codex_and_other_vendors_session_headers():
    assert attribute({"session-id": "codex-1", "user-agent": "codex_cli_rs/0.50"}, {}).session_id == "codex-1"
    assert attribute({"x-acme-agent-session-id": "v-9"}, {}).session_id == "v-9"


def test_openai_user_field_and_nested_session_path_without_id():
    found = attribute(
        {"x-ingate-session-path": "/pipeline/step-2", "user-agent": "OpenAI/Python 2.1.0"}, {"user": "u-5"}
    )
    assert (found.session_id, found.user_id, found.client) == ("pipeline", "u-5", "openai-python")


def test_unknown_agents_are_named_by_their_product_token():
    assert attribute({"user-agent": "Aider/0.86.1"}, {}).client == "aider"
    assert attribute({"user-agent": "MyBot/3.1 (+https://x)"}, {}).client == "mybot"
    assert attribute({}, None).client == ""
