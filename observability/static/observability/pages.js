// The request, session and key pages: copy buttons, images shown on demand, thumbnails enlarged on click.
document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const text = document.getElementById(copy.dataset.copy).textContent;
    const done = () => { copy.textContent = "Copied"; setTimeout(() => { copy.textContent = "Copy"; }, 1500); };
    if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, () => { copy.textContent = "Copy failed"; });
    return;
  }
  const load = event.target.closest("[data-load-image]");
  if (load) {
    // Only http(s) URLs get here (proxy/formats/parts.py): fetched once the reader asks, with no referrer.
    const img = document.createElement("img");
    img.className = "chat-image";
    img.alt = "image from " + load.dataset.loadImage;
    img.referrerPolicy = "no-referrer";
    img.src = load.dataset.loadImage;
    load.parentElement.replaceWith(img);
    return;
  }
  if (event.target.matches("img.chat-image")) event.target.classList.toggle("zoomed");
});
