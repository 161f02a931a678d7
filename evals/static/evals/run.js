// Live progress of an eval run: the server pushes counts over a websocket; the page reloads when it ends.
(function () {
  const box = document.getElementById("progress");
  if (!box || box.dataset.finished === "1") return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ingate/ws/evals/runs/${box.dataset.run}/`);
  socket.onmessage = (event) => {
    const run = JSON.parse(event.data);
    box.querySelector("[data-testid=status]").textContent = run.status_display;
    box.querySelector("[data-testid=counts]").textContent = `${run.done} / ${run.total}`;
    box.querySelector(".bar div").style.width = `${run.total ? (100 * run.done) / run.total : 0}%`;
    if (run.finished) { socket.close(); location.reload(); }
  };
})();
