// The bring-up page of `piimg watch`: polls /status.json and draws one card per node.
// Every text from the status goes into the page as text (textContent), never as markup.
"use strict";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function card(n) {
  const c = el("article", "node " + n.stage);
  c.dataset.node = n.node;
  c.appendChild(el("h2", null, n.node + (n.server ? " (server)" : "")));
  c.appendChild(el("div", "stage", n.stage));
  const meta = [];
  if (n.address) meta.push(n.address);
  if (n.build_id) meta.push("build " + n.build_id.slice(0, 16));
  if (n.seen_s !== null && n.seen_s !== undefined) meta.push("last report at " + n.seen_s + " s");
  c.appendChild(el("div", "meta", meta.join(" · ") || "no report yet"));
  const steps = el("ul", "steps");
  for (const s of n.steps || []) {
    const li = el("li", s.status, s.step + " " + s.status);
    steps.appendChild(li);
  }
  c.appendChild(steps);
  if (n.error) c.appendChild(el("div", "error", n.error));
  return c;
}

// A fleet board that does not join: what it is (to copy into a profile's `match`) and why.
function boardCard(b) {
  const c = el("article", "node board failed");
  c.appendChild(el("h2", null, "board " + b.hardware));
  c.appendChild(el("div", "stage", "not joining"));
  const meta = ["fleet " + b.fleet];
  if (b.address) meta.push(b.address);
  meta.push("reported at " + b.seen_s + " s");
  c.appendChild(el("div", "meta", meta.join(" · ")));
  c.appendChild(el("div", "error", b.reason));
  return c;
}

function draw(st) {
  const nodes = st.nodes || [];
  const ready = nodes.filter((n) => n.stage === "ready").length;
  document.getElementById("summary").textContent =
    ready + " of " + nodes.length + " nodes ready · " + (st.elapsed_s || 0) + " s since watch started" +
    (st.ready ? " · all ready" : "");
  const box = document.getElementById("nodes");
  box.replaceChildren(...nodes.map(card));
  const dash = document.getElementById("dashboard");
  if (typeof st.dashboard === "string" && /^https?:\/\//.test(st.dashboard)) {
    document.getElementById("dashboard-link").href = st.dashboard;
    dash.hidden = false;
  } else {
    dash.hidden = true;
  }
  const boards = st.boards || [];
  document.getElementById("boards-section").hidden = boards.length === 0;
  document.getElementById("boards").replaceChildren(...boards.map(boardCard));
  const rej = st.rejections || [];
  document.getElementById("rejections-section").hidden = rej.length === 0;
  document.getElementById("rejections").replaceChildren(...rej.map((r) => el("li", null, r)));
}

async function poll() {
  try {
    const r = await fetch("/status.json", { cache: "no-store" });
    if (r.ok) draw(await r.json());
  } catch (e) {
    document.getElementById("summary").textContent = "piimg watch is not answering (" + e + ")";
  }
  setTimeout(poll, 1000);
}

poll();
