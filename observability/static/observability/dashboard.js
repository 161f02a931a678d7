// Draws the overview charts from the JSON the page embeds (Chart.js is vendored; nothing loads from a CDN).
(function () {
  const source = document.getElementById("chart-data");
  if (!source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  // Axis text and grid lines from the stylesheet's tokens, so the charts read in dark mode too.
  const tokens = getComputedStyle(document.documentElement);
  Chart.defaults.color = tokens.getPropertyValue("--chart-text").trim() || Chart.defaults.color;
  Chart.defaults.borderColor = tokens.getPropertyValue("--chart-grid").trim() || Chart.defaults.borderColor;
  // Whole-number ticks: a quiet hour's axis reads 0, 1, 2 requests, not 0.2, 0.4.
  const common = { animation: false, maintainAspectRatio: false, plugins: { legend: { position: "bottom" } },
                   scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } };
  const draw = (id, config) => {
    const canvas = document.getElementById(id);
    if (!canvas) return;
    canvas.parentElement.style.height = "220px";
    window.ingateCharts = window.ingateCharts || {};
    window.ingateCharts[id] = new Chart(canvas, { ...config, options: { ...common, ...(config.options || {}) } });
  };
  draw("chart-requests", { type: "bar", data: { labels: data.labels, datasets: [
    { label: "requests", data: data.requests, backgroundColor: "#748ffc" },
    { label: "errors", data: data.errors, backgroundColor: "#fa5252" } ] } });
  // Money in dollars on the axis and in the tooltip: Chart.js's own number format turns to scientific notation
  // below 1e-4 and its tooltip rounds to three decimals (a request's $0.0000036 read "0").
  const money = { ticks: { callback: (value) => window.ingateUsd(value) } };
  draw("chart-cost", { type: "line", data: { labels: data.labels, datasets: [
    { label: "USD", data: data.cost, borderColor: "#2b8a3e", backgroundColor: "#2b8a3e33", fill: true, tension: 0.2 } ] },
    options: { scales: { y: { beginAtZero: true, ...money } },
               plugins: { ...common.plugins, tooltip: { callbacks: { label: (item) => `USD: ${window.ingateUsd(item.parsed.y)}` } } } } });
  draw("chart-tokens", { type: "bar", data: { labels: data.labels, datasets: [
    { label: "input", data: data.input_tokens, backgroundColor: "#91a7ff" },
    { label: "output", data: data.output_tokens, backgroundColor: "#3b5bdb" } ] }, options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } } });
  draw("chart-latency", { type: "line", data: { labels: data.labels, datasets: [
    { label: "p50", data: data.p50, borderColor: "#3b5bdb", tension: 0.2 },
    { label: "p95", data: data.p95, borderColor: "#f59f00", tension: 0.2 } ] } });
})();
