"""What each wire format's transcript makes of the shapes a request page meets less often: reasoning items,
function responses, documents, Ollama's generate endpoint, and image URLs that must never become links."""

from proxy import formats


def kinds(turns):
    return [(t["role"], [p["kind"] for p in t["parts"]]) for t in turns]


def test_responses_reasoning_and_bare_string_input_are_turns():
    body = {"input": "What is 2+2?", "instructions": "Be exact."}
    assert kinds(formats.RESPONSES.transcript(body)) == [("system", ["text"]), ("user", ["text"])]
    answer = {
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Add them."}]},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4"}]},
        ]
    }
    turns = formats.RESPONSES.answer_transcript(answer)
    assert kinds(turns) == [("assistant", ["reasoning"]), ("assistant", ["other"]), ("assistant", ["text"])]
    assert turns[0]["parts"][0]["text"] == "Add them." and turns[1]["parts"][0]["label"] == "web_search_call"


def test_gemini_function_responses_and_thoughts_are_told_apart():
    body = {
        "contents": [
            {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"found": True}}}]},
            {"role": "model", "parts": [{"text": "thinking…", "thought": True}, {"text": "Found it."}]},
        ]
    }
    turns = formats.GEMINI.transcript(body)
    assert kinds(turns) == [("user", ["tool_result"]), ("assistant", ["reasoning", "text"])]
    assert turns[0]["parts"][0]["name"] == "lookup" and '"found": true' in turns[0]["parts"][0]["parts"][0]["text"]


def test_anthropic_documents_and_url_images_are_kept_apart_from_text():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                ],
            }
        ]
    }
    parts = formats.ANTHROPIC.transcript(body)[0]["parts"]
    assert [p["kind"] for p in parts] == ["other", "image"]
    assert parts[1] == {"kind": "image", "url": "https://example.com/a.png", "inline": False}


def test_ollama_generate_is_a_system_and_a_user_turn():
    body = {"model": "llama3", "system": "Short answers.", "prompt": "Why is the sky blue?"}
    assert kinds(formats.OLLAMA.transcript(body)) == [("system", ["text"]), ("user", ["text"])]
    assert kinds(formats.OLLAMA.answer_transcript({"response": "Rayleigh.", "done": True})) == [("assistant", ["text"])]


def test_image_urls_other_than_http_and_image_data_never_become_images():
    for url in ("javascript:alert(1)", "data:text/html;base64,PHNjcmlwdD4=", "file:///etc/passwd", ""):
        body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
        assert [p["kind"] for p in formats.OPENAI.transcript(body)[0]["parts"]] == ["other"], url
