// Lists and creates items through the backend API (proxied by nginx at /api/).
"use strict";

const tbody = document.getElementById("items");
const form = document.getElementById("create-form");
const input = document.getElementById("name");
const message = document.getElementById("message");

function say(text, isError) {
  message.textContent = text;
  message.className = isError ? "error" : "";
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);  // textContent: never interpret item data as HTML
  if (className) td.className = className;
  return td;
}

function render(items) {
  tbody.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    tr.append(
      cell(item.id),
      cell(item.name),
      cell(item.status, "status-" + item.status),
      cell(item.result),
      cell(new Date(item.created_at).toLocaleString()),
    );
    return tr;
  }));
}

async function refresh() {
  try {
    const response = await fetch("/api/items");
    if (!response.ok) throw new Error("GET /api/items: HTTP " + response.status);
    const items = await response.json();
    render(items);
    return items;
  } catch (err) {
    say(err.message, true);
    return [];
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = input.value.trim();
  if (!name) return;
  try {
    const response = await fetch("/api/items", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name }),
    });
    if (!response.ok) throw new Error("POST /api/items: HTTP " + response.status);
    const item = await response.json();
    input.value = "";
    say("Created item #" + item.id + "; the worker will process it shortly.", false);
  } catch (err) {
    say(err.message, true);
  }
  refresh();
});

// Poll while something is pending so results appear without a reload.
async function poll() {
  const items = await refresh();
  const pending = items.some((item) => item.status === "pending");
  setTimeout(poll, pending ? 1000 : 5000);
}

poll();
