// Live progress of an eval run: the server pushes counts over a websocket; the page reloads when it ends. A
// dropped connection is opened again: the server's first message is the run as it is now, so the page catches
// up at once (and a run that finished meanwhile shows finished).
(function () {
  const box = document.getElementById("progress");
  if (!box || box.dataset.finished === "1") return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ingate/ws/evals/runs/${box.dataset.run}/`;
  let retries = 0;
  let ended = false;

  function show(run) {
    box.querySelector("[data-testid=status]").textContent = run.status_display;
    box.querySelector("[data-testid=counts]").textContent = `${run.done} / ${run.total}`;
    box.querySelector(".bar div").style.width = `${run.total ? (100 * run.done) / run.total : 0}%`;
  }

  function connect() {
    const socket = new WebSocket(url);
    socket.onopen = () => { retries = 0; };
    socket.onmessage = (event) => {
      const run = JSON.parse(event.data);
      show(run);
      if (run.finished) { ended = true; socket.close(); location.reload(); }
    };
    socket.onclose = () => {
      // Back off to 10 s while the server stays away.
      if (!ended) setTimeout(connect, Math.min(10000, 1000 * 2 ** retries++));
    };
  }
  connect();
})();
