// The playground: one request per filled column to /ingate/evals/playground/stream/, each answer streamed
// (server-sent events) into its own column with its tokens, cost and latency when done.
(function () {
  const form = document.getElementById("playground");
  if (!form) return;
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  // getAttribute, not form.dataset: the form has a field named "dataset", which shadows that property.
  const urls = { stream: form.getAttribute("data-stream"), save: form.getAttribute("data-save") }, org = form.getAttribute("data-org");
  const value = (name) => form.elements[name].value;

  function input() {
    const body = { org, system: value("system"), user: value("user") };
    if (value("prompt_version")) {
      body.prompt_version = Number(value("prompt_version"));
      try { body.variables = JSON.parse(value("variables") || "{}"); } catch (e) { throw new Error("Variables are not valid JSON."); }
    }
    return body;
  }

  function post(url, body) {
    return fetch(url, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRFToken": csrf }, body: JSON.stringify(body) });
  }

  async function runColumn(column, base) {
    const out = column.querySelector(".answer"), meta = column.querySelector(".meta");
    const model = column.querySelector("[name=model]").value.trim();
    out.textContent = ""; meta.textContent = "…"; out.classList.remove("bad");
    const temperature = column.querySelector("[name=temperature]").value.trim();
    const body = { ...base, model, provider: column.querySelector("[name=provider]").value.trim(),
                   parameters: temperature ? { temperature: Number(temperature) } : {} };
    const reply = await post(urls.stream, body);
    if (!reply.ok) { const err = await reply.json(); out.classList.add("bad"); out.textContent = err.error; meta.textContent = ""; return; }
    const reader = reply.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value: chunk, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(chunk, { stream: true });
      const events = buffer.split("\n\n"); buffer = events.pop();
      for (const raw of events) {
        if (!raw.startsWith("data: ")) continue;
        const event = JSON.parse(raw.slice(6));
        if (event.delta) out.textContent += event.delta;
        if (event.done) {
          if (event.error) { out.classList.add("bad"); out.textContent += (out.textContent ? "\n" : "") + event.error; }
          const cost = event.cost == null ? "unpriced" : `$${event.cost.toFixed(6)}`;
          meta.textContent = `${event.input_tokens ?? "?"} in · ${event.output_tokens ?? "?"} out · ${cost} · ${Math.round(event.latency_ms)} ms`;
          column.dataset.answer = out.textContent;
        }
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let base;
    try { base = input(); } catch (e) { alert(e.message); return; }
    const columns = [...form.querySelectorAll(".column")].filter((c) => c.querySelector("[name=model]").value.trim());
    columns.forEach((column) => runColumn(column, base));
  });

  async function save(kind) {
    const note = form.querySelector("[data-testid=saved]");
    let body;
    try { body = { ...input(), kind }; } catch (e) { note.textContent = e.message; return; }
    if (kind === "item") {
      body.dataset = Number(value("dataset"));
      const from = value("expected_from");
      if (from !== "") body.expected = form.querySelector(`[data-column="${from}"]`).dataset.answer || "";
    } else {
      body.prompt = Number(value("prompt"));
      const first = form.querySelector("[data-column='0']");
      body.model = first.querySelector("[name=model]").value.trim();
    }
    const reply = await post(urls.save, body);
    const result = await reply.json();
    note.textContent = result.saved || result.error;
  }
  form.querySelector("[data-action=save-item]").addEventListener("click", () => save("item"));
  form.querySelector("[data-action=save-prompt]").addEventListener("click", () => save("prompt"));
})();
