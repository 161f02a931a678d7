// The prompt version editor: add and remove messages, and list the {{variables}} the messages and the
// template use as they are typed (the same pattern as prompts/render.py), keeping each one's chosen type.
(function () {
  const form = document.getElementById("editor");
  if (!form) return;
  const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;
  const list = document.getElementById("messages"), table = form.querySelector("#variables tbody");
  const none = document.getElementById("no-variables"), options = document.getElementById("type-options");

  function detected() {
    const names = [];
    for (const area of form.querySelectorAll("textarea[name=content], textarea[name=template]")) {
      for (const match of area.value.matchAll(PLACEHOLDER)) if (!names.includes(match[1])) names.push(match[1]);
    }
    return names;
  }

  function refresh() {
    const chosen = {};
    for (const select of table.querySelectorAll("select")) chosen[select.name.slice(4)] = select.value;
    const names = detected();
    table.replaceChildren(...names.map((name) => {
      const row = document.createElement("tr"), cell = document.createElement("td"), code = document.createElement("code");
      row.dataset.variable = name; code.textContent = name; cell.append(code);
      const pick = document.createElement("td"), select = document.createElement("select");
      select.name = `var-${name}`; select.append(options.content.cloneNode(true)); select.value = chosen[name] || "";
      pick.append(select); row.append(cell, pick);
      return row;
    }));
    none.hidden = names.length > 0;
  }

  form.addEventListener("input", (event) => { if (event.target.tagName === "TEXTAREA") refresh(); });
  form.addEventListener("click", (event) => {
    if (event.target.matches("[data-add]")) {
      const row = document.getElementById("message-row").content.cloneNode(true);
      list.append(row);
      list.lastElementChild.querySelector("textarea").focus();
    } else if (event.target.matches("[data-remove]")) {
      event.target.closest("[data-message]").remove();
      refresh();
    }
  });
})();
