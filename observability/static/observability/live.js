// Live tail: rows pushed over the websocket are prepended to the table.
(function () {
  const table = document.getElementById("live");
  if (!table) return;
  const state = document.getElementById("live-state");
  const body = table.querySelector("tbody");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const usd = (value, reported) => value === null ? (reported ? "unpriced" : "—") : "$" + Number(value).toPrecision(3);
  const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text ?? ""; if (cls) td.className = cls; return td; };
  function connect() {
    const socket = new WebSocket(`${scheme}://${location.host}/ingate/ws/live/?org=${encodeURIComponent(table.dataset.org)}`);
    socket.onopen = () => { state.textContent = "connected"; };
    socket.onclose = () => { state.textContent = "disconnected, retrying…"; setTimeout(connect, 2000); };
    socket.onmessage = (event) => {
      const r = JSON.parse(event.data).record;
      const row = document.createElement("tr");
      row.className = "fresh";
      row.dataset.record = r.id;
      const link = document.createElement("a");
      link.href = `/ingate/logs/${r.id}/`;
      link.textContent = r.created_at.slice(11, 19);
      const time = document.createElement("td"); time.appendChild(link); row.appendChild(time);
      row.appendChild(cell(r.provider));
      row.appendChild(cell(r.response_model || r.model));
      row.appendChild(cell(r.status, "status " + (r.status >= 400 || r.outcome !== "ok" ? "bad" : "ok")));
      row.appendChild(cell(`${r.input_tokens ?? "–"} / ${r.output_tokens ?? "–"}`, "num"));
      row.appendChild(cell(usd(r.cost_total, r.usage_source === "reported"), "num"));
      row.appendChild(cell(`${Math.round(r.total_ms)} ms`, "num"));
      row.appendChild(cell(r.session_id));
      row.appendChild(cell(r.client));
      body.prepend(row);
      while (body.rows.length > 500) body.deleteRow(-1);
    };
  }
  connect();
})();
