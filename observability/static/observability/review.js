// The review queue's keys: 1–9 press the score buttons, "s" skips, "c" goes to the comment; Escape leaves the
// comment (so the digits score again). Keys typed into a field are the field's.
(function () {
  const form = document.getElementById("review-form");
  if (!form) return;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if (typing) {
      if (event.key === "Escape") document.activeElement.blur();
      return;
    }
    if (event.key === "c") { event.preventDefault(); form.elements.comment.focus(); return; }
    const button = form.querySelector(`button[data-key="${CSS.escape(event.key)}"]`);
    if (button) { event.preventDefault(); button.click(); }
  });
})();
