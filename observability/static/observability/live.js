// Live tail: rows pushed over the websocket go into the table newest first. On a dropped connection it
// reconnects with the cursor of the last row received, so the server sends only what came since; a row already
// shown is never added twice.
(function () {
  const table = document.getElementById("live");
  if (!table) return;
  const state = document.getElementById("live-state");
  const body = table.querySelector("tbody");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // The server says whether a record without a cost is unpriced or failed (models.UNPRICED / FAILED).
  const usd = (r) => r.cost_total !== null ? window.ingateUsd(r.cost_total) : r.is_unpriced ? "unpriced" : "—";
  const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text ?? ""; if (cls) td.className = cls; return td; };
  // Rows sort by (created_at, id), as the server sends them; created_at always has microseconds, so strings compare.
  const key = (created, id) => `${created} ${id}`;
  let cursor = "";
  let retries = 0;

  function render(r) {
    const row = document.createElement("tr");
    row.className = "fresh";
    row.dataset.record = r.id;
    row.dataset.key = key(r.created_at, r.id);
    const link = document.createElement("a");
    link.href = `/ingate/logs/${r.id}/`;
    link.textContent = r.created_at.slice(11, 19);
    const time = document.createElement("td"); time.appendChild(link); row.appendChild(time);
    row.appendChild(cell(r.provider));
    row.appendChild(cell(r.response_model || r.model));
    row.appendChild(cell(r.status, "status " + (r.is_failed ? "bad" : "ok")));
    row.appendChild(cell(`${r.input_tokens ?? "–"} / ${r.output_tokens ?? "–"}`, "num"));
    row.appendChild(cell(usd(r), "num"));
    row.appendChild(cell(`${Math.round(r.total_ms)} ms`, "num"));
    row.appendChild(cell(r.session_id));
    row.appendChild(cell(r.client));
    return row;
  }

  function add(r) {
    if (body.querySelector(`tr[data-record="${CSS.escape(r.id)}"]`)) return;  // already shown
    const row = render(r);
    // Newest first; a late row (a long request, stamped when it started) goes where its time puts it.
    const before = Array.from(body.rows).find((other) => other.dataset.key < row.dataset.key);
    body.insertBefore(row, before || null);
    while (body.rows.length > 500) body.deleteRow(-1);
  }

  function connect() {
    const after = cursor ? `&after=${encodeURIComponent(cursor)}` : "";
    const socket = new WebSocket(`${scheme}://${location.host}/ingate/ws/live/?org=${encodeURIComponent(table.dataset.org)}${after}`);
    socket.onopen = () => { state.textContent = "connected"; retries = 0; };
    socket.onclose = () => {
      state.textContent = "disconnected, retrying…";
      // Back off to 10 s while the server stays away, without hammering it from every open tab.
      setTimeout(connect, Math.min(10000, 1000 * 2 ** retries++));
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "record") return;
      add(message.record);
      if (message.cursor) cursor = message.cursor;
    };
  }
  connect();
})();
