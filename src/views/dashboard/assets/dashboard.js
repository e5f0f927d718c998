// coord serve: the live run page, and the refresh of the runs index.
//
// Plain browser JavaScript: no build step, no library, nothing loaded from elsewhere. The
// server sends the run's model (src/views/dashboard/live_view.rs) as server-sent events; this
// file only draws it. Every text goes into the page as text (textContent), never as markup.
(function () {
  "use strict";

  var page = document.body.dataset.page;
  if (page === "runs") {
    refreshIndex();
  } else if (page === "run") {
    followRun(document.body.dataset.events);
  }

  // ---- the runs index: the server renders it; fetch it again every few seconds ----------

  function refreshIndex() {
    setInterval(function () {
      fetch(location.href, { cache: "no-store" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
          var current = document.querySelector("main");
          if (fresh && current) current.replaceWith(document.adoptNode(fresh));
        })
        .catch(function () { /* the server is away for now: the next tick tries again */ });
    }, 3000);
  }

  // ---- the run page ----------------------------------------------------------------------

  function followRun(url) {
    var tree = byId("tree");
    var nodes = new Map();
    var header = null;
    var source = new EventSource(url);

    source.addEventListener("snapshot", function (e) {
      nodes.clear();
      tree.replaceChildren();
      apply(JSON.parse(e.data));
    });
    source.addEventListener("update", function (e) { apply(JSON.parse(e.data)); });
    source.addEventListener("entry", function (e) { addActivity(JSON.parse(e.data)); });
    source.addEventListener("problem", function (e) {
      showError("The journal can no longer be read: " + e.data);
      source.close();
      setConnection("closed", "stopped");
    });
    source.onopen = function () { setConnection("live", "live"); };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        setConnection("closed", "disconnected");
      } else {
        setConnection("reconnecting", "reconnecting…");
      }
    };
    setInterval(function () { if (header) drawCards(header); }, 1000);

    function apply(model) {
      header = model.header;
      drawHeader(header);
      model.nodes.forEach(upsert);
      byId("tree-empty").hidden = nodes.size > 0;
    }

    function upsert(node) {
      var item = nodes.get(node.key);
      if (!item) {
        item = el("li");
        item.id = "node-" + node.key;
        item.appendChild(el("div", "line"));
        if (node.kind !== "effect") item.appendChild(el("ul", "children"));
        var parent = node.parent && nodes.get(node.parent);
        var list = parent ? parent.querySelector(":scope > ul.children") : tree;
        list.appendChild(item);
        nodes.set(node.key, item);
      }
      drawNode(item, node);
    }

    function drawNode(item, node) {
      var line = item.querySelector(":scope > .line");
      line.replaceChildren();
      item.querySelectorAll(":scope > .goal, :scope > .err").forEach(function (n) { n.remove(); });
      if (node.kind === "site") {
        item.className = "node site";
        line.append(el("code", null, node.label), text(" " + node.function));
        return;
      }
      if (node.kind === "effect") {
        item.className = "node effect " + (node.succeeded ? "done" : "failed");
        item.dataset.status = node.status;
        line.append(text("▸ " + node.line));
        return;
      }
      item.className = "node session phase-" + node.phase;
      item.dataset.phase = node.phase;
      item.dataset.state = node.state;
      var badge = node.phase === "queued" ? "queued" : node.state;
      var phase = el("span", "badge phase st-" + badge, badge);
      if (node.phase === "queued" || node.phase === "running") {
        // The journal records spawns and results, not starts: which leaves hold a slot is
        // estimated from --max-parallel and spawn order.
        phase.title = "estimated: the first sessions without a result, up to the run's --max-parallel, run; the rest wait";
      }
      line.append(el("span", "sid", node.id), el("span", "wf", node.workflow), phase);
      if (node.verdict) line.append(el("span", "verdict", node.verdict));
      var facts = [node.duration, node.tokens && node.tokens + " tokens", node.cost].filter(Boolean);
      if (facts.length) line.append(el("span", "facts", facts.join(" · ")));
      if (node.simulated) line.append(el("span", "badge sim", "simulated"));
      var children = item.querySelector(":scope > ul.children");
      var goal = node.summary ? node.goal + " → " + node.summary : node.goal;
      if (goal) item.insertBefore(el("div", "goal", goal), children);
      if (node.error) item.insertBefore(el("div", "err", node.error), children);
    }

    function drawHeader(h) {
      document.title = h.coordinator + " · " + h.status + " · coord";
      byId("coordinator").textContent = h.coordinator;
      var status = byId("status");
      status.textContent = h.status;
      status.className = "badge st-" + h.status;
      var meta = ["run " + h.run_id, "script " + h.script, "mode " + h.mode];
      if (h.pipeline) meta.push("pipeline " + h.pipeline);
      meta.push("started " + h.started + " UTC");
      if (h.max_parallel) meta.push("at most " + h.max_parallel + " leaves at a time");
      if (h.redo_of) meta.push("redo of run " + h.redo_of);
      h.redone_as.forEach(function (r) { meta.push("redone as run " + r); });
      byId("meta").textContent = meta.join(" · ");
      if (h.spend_note) byId("meta").append(text(" "), el("span", "badge sim", "cost " + h.spend_note));
      drawCards(h);
      var outcome = byId("outcome");
      outcome.replaceChildren();
      h.outcome.forEach(function (pair) {
        var chip = el("span", "chip");
        chip.append(el("b", null, pair[0]), text(pair[1]));
        outcome.append(chip);
      });
      drawItems(h);
      if (h.error) showError(h.error); else byId("run-error").hidden = true;
      var warnings = byId("warnings");
      warnings.hidden = h.warnings.length === 0;
      warnings.replaceChildren();
      h.warnings.forEach(function (w) { warnings.append(el("div", null, "warning: " + w)); });
      drawTimeline(h);
      if (h.ended) setConnection("ended", "run " + h.status);
    }

    // The server draws the timeline (the report's SVG, its text escaped there); the page only
    // puts it in place when it changed.
    var drawnTimeline = null;
    function drawTimeline(h) {
      byId("timeline").hidden = !h.timeline_totals;
      byId("timeline-totals").textContent = h.timeline_totals || "";
      if (h.timeline_svg !== drawnTimeline) {
        byId("timeline-chart").innerHTML = h.timeline_svg || "";
        drawnTimeline = h.timeline_svg;
      }
    }

    // One row per item: its outcome and why, linked to GitHub when the repository is known.
    function drawItems(h) {
      byId("items").hidden = h.items.length === 0;
      var body = byId("items-body");
      body.replaceChildren();
      h.items.forEach(function (i) {
        var row = el("tr", "item-row");
        var name = el("td", "nowrap");
        if (i.link) {
          var a = el("a", null, i.label);
          a.href = i.link;
          name.append(a);
        } else {
          name.textContent = i.label;
        }
        var outcome = el("td", "nowrap");
        outcome.append(el("span", "badge", i.outcome));
        if (!i.declared) outcome.append(text(" "), el("span", "hint", "inferred"));
        var did = i.sessions.join(" ");
        if (i.effects.length) did += (did ? " · " : "") + i.effects.length + (i.effects.length === 1 ? " effect" : " effects");
        row.append(name, outcome, el("td", "why", i.reason || ""), el("td", "why", did));
        body.append(row);
      });
      var more = byId("items-more");
      more.hidden = h.items_more === 0;
      more.textContent = "and " + h.items_more + " more items (coord show lists them all)";
    }

    function drawCards(h) {
      var s = h.sessions;
      var phases = [];
      if (s.running) phases.push(s.running + " running");
      if (s.queued) phases.push(s.queued + " queued");
      phases.push(s.done + " done");
      if (s.failed) phases.push(s.failed + " not ok");
      if (s.unfinished) phases.push(s.unfinished + " unfinished");
      var cards = [
        ["Sessions", String(s.total), phases.join(" · ")],
        ["Effects", String(h.effects), h.effects_done + " done"],
        ["Tokens", h.tokens, ""],
        [h.cost_card.label, h.cost_card.value, h.cost_card.note],
        h.ended
          ? ["Duration", h.duration || "—", h.status]
          : ["Duration", elapsed(h.started_at), "so far"]
      ];
      var summary = byId("summary");
      summary.replaceChildren();
      cards.forEach(function (c) {
        var card = el("div", "card");
        card.append(el("div", "label", c[0]), el("div", "value", c[1]), el("div", "note", c[2]));
        summary.append(card);
      });
    }

    function addActivity(entry) {
      if (!entry.line) return;
      var list = byId("activity");
      // Newest first.
      var item = el("li", null, entry.line);
      item.dataset.seq = entry.seq;
      list.insertBefore(item, list.firstChild);
      while (list.children.length > 300) list.lastChild.remove();
    }

    function showError(message) {
      var box = byId("run-error");
      box.textContent = message;
      box.hidden = false;
    }

    function setConnection(kind, label) {
      if (header && header.ended && kind !== "closed") { kind = "ended"; label = "run " + header.status; }
      var c = byId("connection");
      c.className = "connection " + kind;
      c.textContent = label;
    }
  }

  // ---- small helpers -----------------------------------------------------------------------

  // `4m05s` since `started_at`, as the server writes durations (src/views/units.rs).
  function elapsed(startedAt) {
    var ms = Math.max(0, Date.now() - Date.parse(startedAt));
    if (!isFinite(ms)) return "—";
    if (ms < 1000) return ms + "ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + "s";
    if (ms < 3600000) return Math.floor(ms / 60000) + "m" + pad(Math.floor(ms / 1000) % 60) + "s";
    return Math.floor(ms / 3600000) + "h" + pad(Math.floor(ms / 60000) % 60) + "m";
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function byId(id) { return document.getElementById(id); }

  function text(value) { return document.createTextNode(value); }

  function el(tag, className, content) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined && content !== null) node.textContent = content;
    return node;
  }
})();
