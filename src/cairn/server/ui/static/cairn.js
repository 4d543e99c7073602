/* cairn web UI: streams answers, opens cited passages, records feedback, uploads documents and
   draws the admin charts. It calls the JSON API of the same origin; the session cookie stands in for
   the API key only together with the X-CSRF-Token header read from the page (docs/ui.md). */
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";

  function $(selector, root) {
    return (root || document).querySelector(selector);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(name, value === true ? "" : String(value));
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    node.append(...children);
    return node;
  }

  function csrf() {
    const meta = $('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function toLogin() {
    const here = location.pathname + location.search;
    location.assign("/ui/login?next=" + encodeURIComponent(here));
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error.message + (body.error.hint ? ` (${body.error.hint})` : "");
    } catch (ignored) {
      /* not JSON: fall through to the status line */
    }
    return `The server answered ${response.status} ${response.statusText}.`;
  }

  async function send(method, path, body, accept) {
    const headers = { "X-CSRF-Token": csrf(), Accept: accept || "application/json" };
    const options = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (response.status === 401) {
      toLogin();
      throw new Error("Your session has ended; please sign in again.");
    }
    if (!response.ok) throw new Error(await errorMessage(response));
    return response;
  }

  async function api(method, path, body) {
    const response = await send(method, path, body);
    return response.status === 204 ? null : response.json();
  }

  /* ---------------------------------------------------------------- chat */

  async function streamAnswer(path, body, view) {
    const response = await send("POST", path, body, "text/event-stream");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let finished = false;
    const handle = (block) => {
      let event = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
      }
      if (!data) return;
      const payload = JSON.parse(data);
      if (event === "token") view.token(payload.text || "");
      else if (event === "done") {
        view.done(payload);
        finished = true;
      } else if (event === "error") {
        throw new Error((payload.error && payload.error.message) || "The answer failed.");
      }
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        handle(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
    if (buffer.trim()) handle(buffer);
    if (!finished) throw new Error("The answer stream ended before the answer was complete.");
  }

  function citationLabel(c) {
    return c.source + (c.page ? `, page ${c.page}` : "");
  }

  /* Text with [n] / [n, m] markers, the markers turned into buttons that open the cited passage. */
  function withCitations(text, byId, open) {
    const out = [];
    const marker = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
    let last = 0;
    let match;
    while ((match = marker.exec(text)) !== null) {
      const ids = match[1].split(",").map((s) => Number(s.trim()));
      if (!ids.every((id) => byId.has(id))) continue;
      out.push(text.slice(last, match.index));
      for (const id of ids) {
        const c = byId.get(id);
        const button = el("button", { type: "button", class: "cite", "aria-label": `Source ${id}: ${citationLabel(c)}` }, `[${id}]`);
        button.addEventListener("click", () => open(c, button));
        out.push(button);
      }
      last = match.index + match[0].length;
    }
    out.push(text.slice(last));
    return out;
  }

  function feedbackBar(auditId) {
    const formId = `flag-${auditId}`;
    const up = el("button", { type: "button", "aria-pressed": "false" }, el("span", { "aria-hidden": "true" }, "▲ "), "Helpful");
    const down = el("button", { type: "button", "aria-pressed": "false" }, el("span", { "aria-hidden": "true" }, "▼ "), "Not helpful");
    const flag = el("button", { type: "button", "aria-expanded": "false", "aria-controls": formId }, el("span", { "aria-hidden": "true" }, "⚑ "), "Flag");
    const note = el("span", { class: "status", role: "status" });
    const comment = el("textarea", { id: `${formId}-comment`, name: "comment", rows: "3", maxlength: "2000", required: true });
    const form = el(
      "form",
      { class: "flag-form", id: formId, hidden: true },
      el("label", { for: `${formId}-comment` }, "What is wrong with this answer?"),
      comment,
      el("button", { type: "submit" }, "Send flag"),
    );
    const bar = el("div", { class: "feedback", role: "group", "aria-label": "Rate this answer" }, up, down, flag, note, form);

    async function vote(value) {
      try {
        await api("POST", "/api/feedback", { audit_id: auditId, vote: value });
        up.setAttribute("aria-pressed", String(value === 1));
        down.setAttribute("aria-pressed", String(value === -1));
        note.textContent = "Thanks for your feedback.";
      } catch (err) {
        note.textContent = err.message;
      }
    }
    up.addEventListener("click", () => vote(1));
    down.addEventListener("click", () => vote(-1));
    flag.addEventListener("click", () => {
      form.hidden = !form.hidden;
      flag.setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) comment.focus();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api("POST", "/api/feedback", { audit_id: auditId, flag: true, comment: comment.value });
        form.hidden = true;
        flag.setAttribute("aria-expanded", "false");
        flag.setAttribute("aria-pressed", "true");
        note.textContent = "Flag sent. Thank you.";
        flag.focus();
      } catch (err) {
        note.textContent = err.message;
      }
    });
    return bar;
  }

  function passageDialog() {
    const dialog = $("#passage");
    if (!dialog) return null;
    const title = $("#passage-title");
    const meta = $("#passage-meta");
    const text = $("#passage-text");
    let opener = null;
    $("[data-close]", dialog).addEventListener("click", () => dialog.close());
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
    dialog.addEventListener("close", () => {
      if (opener) opener.focus();
    });
    return async function open(citation, button) {
      opener = button;
      title.textContent = citation.source;
      meta.textContent = "Loading the passage…";
      text.replaceChildren();
      dialog.showModal();
      if (citation.chunk_id === null || citation.chunk_id === undefined) {
        meta.textContent = citationLabel(citation);
        text.append(el("mark", {}, citation.text));
        return;
      }
      try {
        const p = await api("GET", `/api/passages/${encodeURIComponent(citation.chunk_id)}?context=600`);
        title.textContent = p.source;
        meta.textContent = [
          p.page ? `page ${p.page}` : null,
          `knowledge base ${p.kb}`,
          `characters ${p.start}–${p.end}`,
        ]
          .filter(Boolean)
          .join(" · ");
        const mark = el("mark", {}, p.text);
        const truncated = p.start - (p.before || "").length > 0;
        text.append((truncated ? "…" : "") + (p.before || ""), mark, p.after || "");
        mark.scrollIntoView({ block: "center" });
      } catch (err) {
        meta.textContent = err.message;
      }
    };
  }

  function initChat() {
    const form = $("#ask-form");
    if (!form) return;
    const question = $("#question");
    const button = $("#ask-button");
    const status = $("#ask-status");
    const messages = $("#messages");
    const openPassage = passageDialog();
    let sessionId = form.dataset.session || null;
    let busy = false;

    function addMessage(role) {
      const body = el("div", { class: "msg-body" });
      const article = el("article", { class: `msg ${role}` }, el("h2", { class: "msg-who" }, role === "user" ? "You" : "cairn"), body);
      messages.append(article);
      return { article, body };
    }

    function assistantView() {
      const { article, body } = addMessage("assistant");
      body.setAttribute("aria-live", "polite");
      body.setAttribute("aria-busy", "true");
      const streamed = document.createTextNode("");
      body.append(el("p", {}, streamed));
      article.scrollIntoView({ block: "end" });
      const view = {
        refused: false,
        token(text) {
          streamed.appendData(text);
        },
        done(answer) {
          view.refused = Boolean(answer.refused);
          const byId = new Map((answer.citations || []).map((c) => [c.id, c]));
          body.replaceChildren();
          if (answer.refused) {
            article.classList.add("refused");
            body.append(el("p", { class: "refusal-note" }, "No answer in the documents you can read."));
          }
          for (const para of String(answer.answer || "").split(/\n{2,}/)) {
            body.append(el("p", {}, ...withCitations(para, byId, openPassage)));
          }
          if (byId.size) {
            const list = el("ol", { class: "sources", "aria-label": "Sources" });
            for (const c of byId.values()) {
              const open = el("button", { type: "button" }, `[${c.id}] ${citationLabel(c)}`);
              open.addEventListener("click", () => openPassage(c, open));
              list.append(el("li", {}, open));
            }
            body.append(el("h3", { class: "msg-who" }, "Sources"), list);
          }
          const g = answer.grounding;
          if (g && g.verdict) {
            const ratio = typeof g.supported_ratio === "number" ? `, ${Math.round(g.supported_ratio * 100)}% of sentences supported` : "";
            body.append(el("p", { class: "grounding" }, `Grounding check: ${g.verdict}${ratio}.`));
          }
          body.setAttribute("aria-busy", "false");
          if (answer.audit_id !== null && answer.audit_id !== undefined) article.append(feedbackBar(answer.audit_id));
        },
        fail(message) {
          body.replaceChildren(el("p", { class: "alert", role: "alert" }, message));
          body.setAttribute("aria-busy", "false");
        },
      };
      return view;
    }

    function remember(id, title) {
      const list = $("#sessions");
      const empty = $("#no-sessions");
      if (empty) empty.remove();
      for (const current of list.querySelectorAll('[aria-current="page"]')) current.removeAttribute("aria-current");
      const link = el("a", { href: `/ui/?chat=${encodeURIComponent(id)}`, "aria-current": "page" }, title.slice(0, 120));
      list.prepend(el("li", {}, link, el("span", { class: "muted" }, " just now")));
    }

    function lockKbs(kbs) {
      const fieldset = $("fieldset.kbs", form);
      fieldset.disabled = true;
      fieldset.append(el("p", { class: "help" }, `This conversation searches ${kbs.join(", ")}. `, el("a", { href: "/ui/" }, "Start a new conversation"), " to change."));
    }

    question.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (busy) return;
      const text = question.value.trim();
      status.classList.remove("error");
      if (!text) {
        status.textContent = "Type a question first.";
        question.focus();
        return;
      }
      const kbs = Array.from(form.querySelectorAll('input[name="kb"]:checked'), (input) => input.value);
      if (!sessionId && !kbs.length) {
        status.textContent = "Choose at least one knowledge base.";
        return;
      }
      busy = true;
      button.disabled = true;
      status.textContent = "Searching the documents…";
      addMessage("user").body.append(el("p", {}, text));
      question.value = "";
      const view = assistantView();
      try {
        if (!sessionId) {
          const created = await api("POST", "/api/chats", { kbs });
          sessionId = created.id;
          form.dataset.session = sessionId;
          history.replaceState(null, "", `/ui/?chat=${encodeURIComponent(sessionId)}`);
          lockKbs(kbs);
          remember(sessionId, text);
        }
        await streamAnswer(`/api/chats/${encodeURIComponent(sessionId)}/messages`, { question: text, stream: true }, view);
        status.textContent = view.refused ? "No answer was found in the documents." : "Answer complete.";
      } catch (err) {
        view.fail(err.message);
        status.textContent = "";
      } finally {
        busy = false;
        button.disabled = false;
        question.focus();
      }
    });
  }

  /* -------------------------------------------------------------- upload */

  function initUpload() {
    const form = $("#upload-form");
    if (!form) return;
    const button = $("#upload-button");
    const progress = $("#upload-progress");
    const status = $("#upload-status");
    const result = $("#upload-result");

    function show(data) {
      const rows = (data.documents || []).map((d) =>
        el(
          "tr",
          {},
          el("th", { scope: "row" }, el("span", { class: "source" }, d.source)),
          el("td", {}, el("span", { class: `badge ${d.status}` }, d.status)),
          el("td", {}, String(d.chunks)),
          el("td", {}, d.message || ""),
        ),
      );
      const head = el("tr", {}, ...["File", "Status", "Chunks", "Message"].map((h) => el("th", { scope: "col" }, h)));
      result.replaceChildren(el("table", {}, el("caption", { class: "sr-only" }, "Indexing results"), el("thead", {}, head), el("tbody", {}, ...rows)));
      result.hidden = false;
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      const kb = $("#upload-kb").value.trim();
      const data = new FormData();
      for (const file of $("#upload-files").files) data.append("files", file, file.name);
      data.append("groups", $("#upload-groups").value);
      data.append("users", $("#upload-users").value);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/api/kbs/${encodeURIComponent(kb)}/documents`);
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.setRequestHeader("Accept", "application/json");
      progress.value = 0;
      status.classList.remove("error");
      status.textContent = "Uploading…";
      result.hidden = true;
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
      });
      xhr.upload.addEventListener("load", () => {
        progress.removeAttribute("value");
        status.textContent = "Uploaded. Parsing, chunking and indexing…";
      });
      xhr.addEventListener("load", () => {
        button.disabled = false;
        progress.value = 100;
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch (ignored) {
          body = null;
        }
        if (xhr.status === 401) {
          toLogin();
          return;
        }
        if (xhr.status >= 200 && xhr.status < 300 && body) {
          status.textContent =
            `Indexed into ${body.kb}: ${body.added} added, ${body.updated} updated, ${body.unchanged} unchanged, ` +
            `${body.failed} failed; ${body.chunks} chunks in ${Number(body.seconds).toFixed(1)} s.`;
          show(body);
        } else {
          progress.value = 0;
          status.classList.add("error");
          status.textContent = body && body.error ? `Upload failed: ${body.error.message}` : `Upload failed (${xhr.status}).`;
        }
      });
      xhr.addEventListener("error", () => {
        button.disabled = false;
        progress.value = 0;
        status.classList.add("error");
        status.textContent = "Upload failed: the server could not be reached.";
      });
      button.disabled = true;
      xhr.send(data);
    });
  }

  /* --------------------------------------------------------------- admin */

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= value) return m * power;
    return 10 * power;
  }

  function bucketLabel(start, bucket) {
    return bucket === "day" ? start.slice(0, 10) : `${start.slice(5, 10)} ${start.slice(11, 16)}`;
  }

  function number(value, digits) {
    return value === null || value === undefined ? "–" : Number(value).toFixed(digits || 0);
  }

  /* One chart: an SVG (role=img, titled and described), a legend, and the same numbers as a table. */
  function drawChart(id, stats, series, options) {
    const figure = $(`#${id}`);
    const caption = $("figcaption", figure);
    figure.replaceChildren(caption);
    const buckets = stats.buckets;
    const value = (b, s) => (b[s.key] === null || b[s.key] === undefined ? null : b[s.key] * (s.scale || 1));
    const all = buckets.flatMap((b) => series.map((s) => value(b, s))).filter((v) => v !== null);
    if (!all.length || (options.kind === "bar" && !all.some((v) => v > 0))) {
      figure.append(el("p", { class: "empty" }, "No data in this period."));
      return;
    }
    const W = 600;
    const H = 220;
    const left = 52;
    const right = 12;
    const top = 12;
    const bottom = 30;
    const pw = W - left - right;
    const ph = H - top - bottom;
    const max = options.max || niceMax(Math.max(...all));
    const y = (v) => top + ph - (v / max) * ph;
    const n = buckets.length;
    const slot = pw / n;
    const x = (i) => (options.kind === "bar" ? left + slot * i + slot / 2 : n === 1 ? left + pw / 2 : left + (i * pw) / (n - 1));
    const label = (i) => bucketLabel(buckets[i].start, stats.bucket);
    const titleId = `${id}-title`;
    const descId = `${id}-desc`;
    const lastWithData = [...buckets].reverse().find((b) => series.some((s) => value(b, s) !== null));
    const latest = lastWithData ? series.map((s) => `${s.name} ${number(value(lastWithData, s), options.digits)}${options.unit}`).join(", ") : "";
    const chart = svg(
      "svg",
      { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${titleId} ${descId}`, focusable: "false" },
      svg("title", { id: titleId }, caption.textContent),
      svg("desc", { id: descId }, `${n} ${stats.bucket} buckets from ${label(0)} to ${label(n - 1)} UTC. Latest: ${latest}.`),
    );
    const grid = svg("g", { class: "grid" });
    for (const f of [0, 0.25, 0.5, 0.75, 1]) {
      const v = max * f;
      grid.append(
        svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v) }),
        svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, `${number(v, v < 10 && max <= 10 ? 1 : 0)}${options.unit}`),
      );
    }
    chart.append(grid);
    const axis = svg("g", { class: "axis" });
    for (const i of [...new Set([0, Math.floor((n - 1) / 2), n - 1])]) {
      const anchor = n === 1 ? "middle" : i === 0 ? "start" : i === n - 1 ? "end" : "middle";
      axis.append(svg("text", { x: x(i), y: H - 10, "text-anchor": anchor }, label(i)));
    }
    chart.append(axis);
    series.forEach((s, k) => {
      const group = svg("g", { class: s.cls });
      if (options.kind === "bar") {
        const width = Math.max(1, Math.min(28, (slot * 0.8) / series.length));
        buckets.forEach((b, i) => {
          const v = value(b, s);
          if (!v) return;
          const bx = left + slot * i + slot / 2 - (width * series.length) / 2 + width * k;
          group.append(svg("rect", { x: bx, y: y(v), width, height: top + ph - y(v), class: s.cls }, svg("title", {}, `${label(i)}: ${s.name} ${number(v)}`)));
        });
      } else {
        let d = "";
        let pen = false;
        buckets.forEach((b, i) => {
          const v = value(b, s);
          if (v === null) {
            pen = false;
            return;
          }
          d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
          pen = true;
          group.append(svg("circle", { cx: x(i), cy: y(v), r: 3.5, class: s.cls }, svg("title", {}, `${label(i)}: ${s.name} ${number(v, options.digits)}${options.unit}`)));
        });
        group.prepend(svg("path", { d, class: `line ${s.cls}` }));
      }
      chart.append(group);
    });
    const legend = el("ul", { class: "legend", "aria-hidden": "true" }, ...series.map((s) => el("li", {}, el("span", { class: `swatch ${s.cls}` }), s.name)));
    const head = el("tr", {}, el("th", { scope: "col" }, `${stats.bucket} (UTC)`), ...series.map((s) => el("th", { scope: "col" }, `${s.name}${options.unit ? ` (${options.unit.trim()})` : ""}`)));
    const rows = buckets.map((b, i) => el("tr", {}, el("th", { scope: "row" }, label(i)), ...series.map((s) => el("td", {}, number(value(b, s), options.digits)))));
    const table = el("details", {}, el("summary", {}, "Data table"), el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows))));
    figure.append(legend, chart, table);
  }

  function showTotals(totals) {
    const dl = $("#stats-totals");
    const pct = (v) => (v === null || v === undefined ? "–" : `${Math.round(v * 100)}%`);
    const items = [
      ["Answers", String(totals.answers)],
      ["Searches", String(totals.searches)],
      ["Refusal rate", pct(totals.refusal_rate)],
      ["Latency p50", totals.latency_p50_ms === null ? "–" : `${Math.round(totals.latency_p50_ms)} ms`],
      ["Latency p95", totals.latency_p95_ms === null ? "–" : `${Math.round(totals.latency_p95_ms)} ms`],
      ["Supported sentences", pct(totals.supported_ratio)],
      ["Votes up / down", `${totals.votes_up} / ${totals.votes_down}`],
      ["Flags", String(totals.flags)],
    ];
    dl.replaceChildren(...items.map(([term, value]) => el("div", {}, el("dt", {}, term), el("dd", {}, value))));
  }

  function initAdmin() {
    const form = $("#stats-form");
    if (!form) return;
    const status = $("#stats-status");
    async function load() {
      const bucket = $("#stats-bucket").value;
      const days = $("#stats-days").value;
      status.classList.remove("error");
      status.textContent = "Loading activity…";
      try {
        const stats = await api("GET", `/api/stats?bucket=${encodeURIComponent(bucket)}&days=${encodeURIComponent(days)}`);
        showTotals(stats.totals);
        drawChart("chart-latency", stats, [
          { name: "p50", key: "latency_p50_ms", cls: "s1" },
          { name: "p95", key: "latency_p95_ms", cls: "s2" },
        ], { kind: "line", unit: " ms" });
        drawChart("chart-refusal", stats, [{ name: "refused", key: "refusal_rate", cls: "s2", scale: 100 }], { kind: "line", unit: "%", max: 100 });
        drawChart("chart-grounding", stats, [{ name: "supported", key: "supported_ratio", cls: "s3", scale: 100 }], { kind: "line", unit: "%", max: 100 });
        drawChart("chart-feedback", stats, [
          { name: "up", key: "votes_up", cls: "s3" },
          { name: "down", key: "votes_down", cls: "s2" },
        ], { kind: "bar", unit: "" });
        status.textContent = `${stats.records} audit records and ${stats.feedback} feedback entries over the last ${stats.days} days, per ${stats.bucket}.`;
      } catch (err) {
        status.classList.add("error");
        status.textContent = err.message;
      }
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      load();
    });
    load();
  }

  document.addEventListener("DOMContentLoaded", () => {
    initChat();
    initUpload();
    initAdmin();
  });
})();
