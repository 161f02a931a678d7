// Dollars as the pages' `usd` filter writes them, for the charts and the live tail: $1,234.56 from a dollar up,
// four significant digits below ($0.0000036), never scientific notation, which Chart.js and toPrecision fall into
// for the tiny amounts one request costs.
window.ingateUsd = function (value) {
  const amount = Number(value);
  if (!Number.isFinite(amount)) return "—";
  if (amount === 0) return "$0";
  const options = Math.abs(amount) >= 1
    ? { minimumFractionDigits: 2, maximumFractionDigits: 2 }
    : { maximumSignificantDigits: 4 };
  return (amount < 0 ? "-$" : "$") + Math.abs(amount).toLocaleString("en-US", { notation: "standard", ...options });
};
