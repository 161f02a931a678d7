"""The request page reads a kept conversation through its wire format and shows it as chat bubbles (every
format: OpenAI chat and responses, Anthropic messages, Gemini, Ollama), escaped; images inline only from data
URLs; both bodies pretty-printed; a replay link that opens the playground prefilled; and the end-user page."""

import datetime
import html
import json
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from observability import rollups
from observability.models import ObservabilitySettings, RequestBody, RequestRecord

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def kept(tenant, request: dict, response, *, provider="openai", endpoint="chat.completions", **fields):
    ObservabilitySettings.objects.get_or_create(org=tenant.org, defaults={"body_mode": "full"})
    values = {
        "org": tenant.org,
        "app": tenant.app,
        "key": tenant.key,
        "provider": provider,
        "endpoint": endpoint,
        "model": request.get("model", "gpt-4o-mini"),
        "status": 200,
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "cost_total": Decimal("0.0001"),
        "usage_source": "reported",
        "total_ms": 900.0,
        "created_at": timezone.now() - datetime.timedelta(minutes=3),
        **fields,
    }
    record = RequestRecord.objects.create(**values)
    rollups.apply([record])
    RequestBody.objects.create(
        record=record,
        created_at=record.created_at,
        request=json.dumps(request),
        response=response if isinstance(response, str) else json.dumps(response),
    )
    return record


@pytest.fixture
def viewer(world):
    client = Client()
    client.force_login(world.own.users["viewer"])
    return client


def page(client, record) -> str:
    reply = client.get(f"/ingate/logs/{record.pk}/")
    assert reply.status_code == 200, reply.status_code
    return reply.content.decode()


def bubbles(text: str) -> list[str]:
    return [chunk.split('"', 1)[0] for chunk in text.split('data-role="')[1:]]


def test_an_openai_chat_is_shown_as_bubbles_with_tool_calls_results_and_the_answer(viewer, world):
    record = kept(
        world.own,
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Oslo?"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "21 C and sunny"},
            ],
        },
        {"choices": [{"message": {"role": "assistant", "content": "Sunny, 21 °C."}}]},
    )
    shown = page(viewer, record)
    assert bubbles(shown) == ["system", "user", "assistant", "tool", "assistant"]
    assert "Tool call <code>get_weather</code> <small>call_1</small>" in shown
    assert html.escape('{\n  "city": "Oslo"\n}') in shown  # arguments pretty-printed
    assert "Tool result <small>for call_1</small>" in shown and "21 C and sunny" in shown
    assert 'data-testid="answer"' in shown and "Sunny, 21 °C." in shown


def test_a_script_in_a_message_is_shown_as_text(viewer, world):
    attack = "<script>alert('owned')</script><img src=x onerror=alert(1)>"
    record = kept(
        world.own,
        {"messages": [{"role": "user", "content": attack}], "model": "gpt-4o-mini"},
        {"choices": [{"message": {"role": "assistant", "content": attack}}]},
    )
    shown = page(viewer, record)
    assert "<script>alert" not in shown and "<img src=x" not in shown
    assert html.escape(attack) in shown  # in the bubbles (and the pretty-printed bodies)


def test_images_show_inline_from_data_urls_but_remote_ones_wait_for_a_click(viewer, world):
    record = kept(
        world.own,
        {
            "model": "gpt-4o",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://tracker.example/pixel.png"}},
                        {"type": "image_url", "image_url": {"url": "javascript:alert(1)"}},
                    ],
                }
            ],
        },
        {"choices": [{"message": {"role": "assistant", "content": "A pixel."}}]},
    )
    shown = page(viewer, record)
    assert f'<img class="chat-image" src="data:image/png;base64,{PNG}"' in shown
    assert 'src="https://tracker.example' not in shown  # the page does not fetch it by itself
    assert 'data-load-image="https://tracker.example/pixel.png"' in shown
    assert 'href="javascript:' not in shown and 'data-load-image="javascript:' not in shown


def test_an_anthropic_conversation_with_blocks_is_read_by_its_format(viewer, world):
    record = kept(
        world.own,
        {
            "model": "claude-sonnet-4",
            "system": [{"type": "text", "text": "You are Claude Code."}],
            "tools": [{"name": "Bash", "input_schema": {}}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "list files"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "use ls"},
                        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "README.md"}],
                },
            ],
        },
        {"role": "assistant", "type": "message", "content": [{"type": "text", "text": "There is a README."}]},
        provider="anthropic",
        endpoint="messages",
    )
    shown = page(viewer, record)
    assert bubbles(shown) == ["system", "user", "assistant", "user", "assistant"]
    assert "You are Claude Code." in shown and "<summary>Reasoning</summary>" in shown
    assert (
        "Tool call <code>Bash</code> <small>toolu_1</small>" in shown
        and "Tool result <small>for toolu_1</small>" in shown
    )
    assert f"data:image/png;base64,{PNG}" in shown and "There is a README." in shown


def test_gemini_responses_and_ollama_conversations_are_read_by_their_formats(viewer, world):
    gemini = kept(
        world.own,
        {
            "systemInstruction": {"parts": [{"text": "Answer in French."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hello"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]}
            ],
        },
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": "x"}}}]}}
            ]
        },
        provider="gemini",
        endpoint="generateContent",
        model="gemini-2.0-flash",
    )
    shown = page(viewer, gemini)
    assert bubbles(shown) == ["system", "user", "assistant"]
    assert "Answer in French." in shown and "Tool call <code>lookup</code>" in shown and PNG in shown

    responses = kept(
        world.own,
        {
            "model": "gpt-4.1",
            "instructions": "Be terse.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Add 2 and 2"}]},
                {"type": "function_call", "call_id": "fc_1", "name": "add", "arguments": '{"a":2,"b":2}'},
                {"type": "function_call_output", "call_id": "fc_1", "output": "4"},
            ],
        },
        {
            "output": [
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 4."}]}
            ]
        },
        endpoint="responses",
    )
    shown = page(viewer, responses)
    assert bubbles(shown) == ["system", "user", "assistant", "tool", "assistant"]
    assert "Tool call <code>add</code> <small>fc_1</small>" in shown and "It is 4." in shown

    ollama = kept(
        world.own,
        {"model": "llava", "messages": [{"role": "user", "content": "Describe", "images": [PNG]}]},
        '{"model":"llava","message":{"role":"assistant","content":"A dot."},"done":true}',
        provider="ollama",
        endpoint="chat",
    )
    shown = page(viewer, ollama)
    assert bubbles(shown) == ["user", "assistant"]
    assert f"data:image/png;base64,{PNG}" in shown and "A dot." in shown


def test_bodies_are_pretty_printed_with_copy_buttons_and_a_streamed_answer_is_its_text(viewer, world):
    record = kept(
        world.own,
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        "Hello there!",
        stream=True,
    )
    shown = page(viewer, record)
    assert 'data-copy="request-json"' in shown and 'data-copy="response-json"' in shown
    assert html.escape('{\n  "model": "gpt-4o-mini",\n  "stream": true,') in shown
    assert bubbles(shown) == ["user", "assistant"] and "Hello there!" in shown


def test_a_body_cut_at_the_size_cap_is_shown_as_kept_without_bubbles(viewer, world):
    record = kept(world.own, {"model": "m", "messages": []}, "")
    RequestBody.objects.filter(record=record).update(request='{"model": "m", "messages": [{"role": "us', truncated=True)
    shown = page(viewer, record)
    assert 'data-testid="chat"' not in shown and "cut at the size cap" in shown
    assert html.escape('{"model": "m", "messages": [{"role": "us') in shown
    assert 'data-testid="replay"' not in shown


def test_replay_opens_the_playground_with_the_system_prompt_last_user_message_and_model(world):
    record = kept(
        world.own,
        {
            "model": "claude-3-5-haiku-latest",
            "system": "Answer with a city.",
            "messages": [
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris"},
                {"role": "user", "content": "And of <Italy>?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Rome"}]},
        provider="anthropic",
        endpoint="messages",
    )
    member = Client()
    member.force_login(world.own.users["member"])
    shown = page(member, record)
    link = f"/ingate/evals/playground/?org={world.own.org.slug}&amp;record={record.pk}"
    assert f'href="{link}" data-testid="replay"' in shown
    playground = member.get(html.unescape(link)).content.decode()
    assert '<textarea name="system" rows="2" cols="90">Answer with a city.</textarea>' in playground
    assert 'data-testid="user">And of &lt;Italy&gt;?</textarea>' in playground
    assert 'value="claude-3-5-haiku-latest" data-testid="model-0"' in playground
    assert 'value="anthropic"' in playground

    # Another org's member gets an empty playground, not the record's text.
    outsider = Client()
    outsider.force_login(world.other.users["owner"])
    other = outsider.get(f"/ingate/evals/playground/?org={world.other.org.slug}&record={record.pk}").content.decode()
    assert "Capital of France" not in other and "Answer with a city." not in other
    assert outsider.get(f"/ingate/logs/{record.pk}/").status_code == 404


def test_the_end_user_page_shows_spend_requests_sessions_and_charts(viewer, world):
    for n in range(3):
        kept(
            world.own,
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "q"}]},
            "a",
            user_id="alice@example.com",
            session_id=f"s{n % 2}",
        )
    kept(world.own, {"model": "gpt-4o-mini", "messages": []}, "a", user_id="bob")
    reply = viewer.get(f"/ingate/users/alice@example.com/?org={world.own.org.slug}")
    assert reply.status_code == 200
    shown = reply.content.decode()
    assert 'data-testid="user-spend">$0.0003<' in shown
    assert (
        f'data-testid="user-requests"><a href="/ingate/logs/?org={world.own.org.slug}&user=%22alice%40example.com%22">3</a>'
        in shown
    )
    assert 'data-testid="user-sessions">2<' in shown
    assert shown.count("<rect ") >= 3 * 30  # a bar per day of the 30-day window, in each of the three charts
    assert viewer.get(f"/ingate/users/nobody/?org={world.own.org.slug}").status_code == 404
    other = Client()
    other.force_login(world.other.users["owner"])
    assert other.get(f"/ingate/users/alice@example.com/?org={world.own.org.slug}").status_code == 404


def test_each_user_row_of_the_overview_links_to_the_users_page(viewer, world):
    kept(world.own, {"model": "gpt-4o-mini", "messages": []}, "a", user_id="carol")
    shown = viewer.get(f"/ingate/?org={world.own.org.slug}").content.decode()
    assert f'href="/ingate/users/carol/?org={world.own.org.slug}" data-testid="user-page"' in shown
