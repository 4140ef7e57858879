/* flower-fileintel pages: live updates by Server-Sent Events, polling as the fallback.
 *
 * Task data (names, messages, results, errors) is only ever put into the page with
 * textContent or as attribute values set through the DOM: never as HTML strings.
 */
(function () {
  "use strict";

  var POLL_MS = 2000;

  function byId(id) { return document.getElementById(id); }

  function setText(el, value) {
    if (el) { el.textContent = (value === null || value === undefined || value === "") ? "\u2014" : String(value); }
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function fmtTime(iso) {
    if (!iso) { return "\u2014"; }
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return String(iso); }
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) { return "\u2014"; }
    s = Math.max(0, Math.round(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (h) { return h + "h " + pad(m) + "m " + pad(sec) + "s"; }
    if (m) { return m + "m " + pad(sec) + "s"; }
    return sec + " s";
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) { return "\u2014"; }
    if (n < 1024) { return n + " B"; }
    if (n < 1048576) { return (n / 1024).toFixed(1) + " KiB"; }
    return (n / 1048576).toFixed(1) + " MiB";
  }

  function progressPercent(doc) {
    var p = doc.progress;
    if (p && p.percent !== null && p.percent !== undefined) { return p.percent; }
    return doc.phase === "succeeded" ? 100 : 0;
  }

  function progressLabel(p) {
    if (!p) { return "no progress reported"; }
    if (p.percent !== null && p.percent !== undefined) { return p.percent + " %"; }
    if (p.current !== null && p.current !== undefined) {
      return p.total ? p.current + " / " + p.total : String(p.current);
    }
    return "\u2014";
  }

  function setBadge(el, phase) {
    if (!el) { return; }
    el.textContent = phase;
    el.className = "badge fi-badge fi-phase-" + String(phase).replace(/[^a-z]/g, "");
  }

  function makeBar(percent, animated) {
    var outer = document.createElement("div");
    outer.className = "progress fi-progress";
    outer.setAttribute("role", "progressbar");
    outer.setAttribute("aria-valuemin", "0");
    outer.setAttribute("aria-valuemax", "100");
    var inner = document.createElement("div");
    inner.className = "progress-bar" + (animated ? " progress-bar-striped progress-bar-animated" : "");
    outer.appendChild(inner);
    setBar(outer, percent);
    return outer;
  }

  function setBar(outer, percent) {
    var value = Math.max(0, Math.min(100, Number(percent) || 0));
    outer.setAttribute("aria-valuenow", String(value));
    outer.firstChild.style.width = value + "%";
  }

  function setLive(text) { setText(byId("fi-live"), text); }

  /* Push first; on failure (or ?fi_transport=poll) poll the page's JSON endpoint. */
  function connect(root, handleData, onEnd) {
    // The first data (pushed or polled) marks the page live, for tests and tools that wait.
    function onData(kind, data) {
      var result = handleData(kind, data);
      document.documentElement.setAttribute("data-fileintel-live", "1");
      return result;
    }
    var eventsUrl = root.getAttribute("data-events-url");
    var pollUrl = root.getAttribute("data-poll-url");
    var forcePoll = /[?&]fi_transport=poll\b/.test(window.location.search);
    var stopped = false;
    var source = null;

    function poll() {
      if (stopped) { return; }
      window.fileintelTransport = "poll";
      setLive("live (polling)");
      fetch(pollUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) {
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.json();
        })
        .then(function (data) {
          var done = onData("poll", data);
          if (done) { stopped = true; if (onEnd) { onEnd(); } return; }
          window.setTimeout(poll, POLL_MS);
        })
        .catch(function () {
          setLive("updates unavailable; retrying");
          window.setTimeout(poll, POLL_MS * 2);
        });
    }

    if (forcePoll || !window.EventSource) { poll(); return; }
    source = new EventSource(eventsUrl, { withCredentials: true });
    window.fileintelTransport = "push";
    source.addEventListener("hello", function () { setLive("live"); });
    source.addEventListener("status", function (e) { onData("status", JSON.parse(e.data)); });
    source.addEventListener("board", function (e) { setLive("live"); onData("board", JSON.parse(e.data)); });
    source.addEventListener("problem", function (e) {
      setLive("updates delayed: " + JSON.parse(e.data).message + " (retrying)");
    });
    source.addEventListener("progress", function (e) { onData("progress", JSON.parse(e.data)); });
    source.addEventListener("end", function () {
      stopped = true;
      source.close();
      if (onEnd) { onEnd(); }
    });
    source.onerror = function () {
      if (stopped) { return; }
      source.close();
      poll();
    };
  }

  /* ---------------------------------------------------------------- task page */

  function taskPage(root) {
    var wasReady = root.getAttribute("data-ready") === "true";
    var fill = byId("fi-progress-fill");
    var bar = byId("fi-progressbar");

    function apply(doc) {
      window.fileintelLastDoc = doc;
      setBadge(byId("fi-phase"), doc.phase);
      setText(byId("fi-state"), doc.state || "no state");
      setText(byId("fi-name"), doc.name || "(name not known)");
      setText(byId("fi-worker"), doc.worker);
      setText(byId("fi-queued-at"), fmtTime(doc.queued_at));
      setText(byId("fi-started-at"), fmtTime(doc.started_at));
      setText(byId("fi-completed-at"), fmtTime(doc.completed_at));
      setText(byId("fi-runtime"), doc.runtime_s === null ? null : doc.runtime_s.toFixed(3) + " s");
      setText(byId("fi-retries"), doc.retries);
      var card = byId("fi-progress-card");
      if (card && (doc.progress || !doc.ready)) { card.classList.remove("d-none"); }
      if (bar && fill) {
        var pct = progressPercent(doc);
        bar.setAttribute("aria-valuenow", String(pct));
        fill.style.width = Math.max(0, Math.min(100, pct)) + "%";
        if (doc.ready) { fill.classList.remove("progress-bar-animated", "progress-bar-striped"); }
      }
      setText(byId("fi-progress-label"), progressLabel(doc.progress));
      var msg = byId("fi-progress-message");
      if (msg) { msg.textContent = (doc.progress && doc.progress.message) || ""; }
      var upd = byId("fi-progress-updated");
      if (upd) { upd.textContent = (doc.progress && doc.progress.updated_at) ? "updated " + doc.progress.updated_at : ""; }
      var issues = byId("fi-progress-issues");
      if (issues) {
        while (issues.firstChild) { issues.removeChild(issues.firstChild); }
        ((doc.progress && doc.progress.issues) || []).forEach(function (issue) {
          var li = document.createElement("li");
          li.textContent = issue;
          issues.appendChild(li);
        });
      }
      return doc.ready;
    }

    function onData(kind, doc) {
      if (kind !== "status" && kind !== "poll") { return false; }
      var done = apply(doc);
      if (done && !wasReady) {
        // Final: reload once so the result / error / expiry are rendered by the server.
        wasReady = true;
        window.setTimeout(function () { window.location.reload(); }, 300);
      }
      return done;
    }

    if (!wasReady) { connect(root, onData, null); }
  }

  /* ---------------------------------------------------------------- board */

  function boardPage(root) {
    var taskBase = root.getAttribute("data-task-base");
    var flowerBase = root.getAttribute("data-flower-task-base");
    var rows = {};  // task id -> {bar, phase, message} of the running table

    function link(id) {
      var a = document.createElement("a");
      a.href = taskBase + encodeURIComponent(id);
      var code = document.createElement("code");
      code.textContent = id.length > 12 ? id.slice(0, 8) + "\u2026" : id;
      code.title = id;
      a.appendChild(code);
      return a;
    }

    function cell(tr, content) {
      var td = document.createElement("td");
      if (content instanceof Node) { td.appendChild(content); } else { setText(td, content); }
      tr.appendChild(td);
      return td;
    }

    function badge(phase) {
      var span = document.createElement("span");
      setBadge(span, phase);
      return span;
    }

    function fill(tableId, emptyId, items, build) {
      var body = byId(tableId).tBodies[0];
      while (body.firstChild) { body.removeChild(body.firstChild); }
      items.forEach(function (t) { body.appendChild(build(t)); });
      byId(emptyId).classList.toggle("d-none", items.length > 0);
    }

    function renderBoard(board) {
      rows = {};
      setText(byId("fi-running-count"), board.running.length);
      fill("fi-running", "fi-running-empty", board.running, function (t) {
        var tr = document.createElement("tr");
        tr.setAttribute("data-task-id", t.task_id);
        cell(tr, link(t.task_id));
        cell(tr, t.name);
        var ph = badge(t.phase);
        cell(tr, ph);
        var td = cell(tr, "");
        td.textContent = "";
        var bar = makeBar(progressPercent(t), true);
        var msg = document.createElement("div");
        msg.className = "fi-row-message";
        msg.textContent = (t.progress && t.progress.message) || "";
        td.appendChild(bar);
        td.appendChild(msg);
        cell(tr, t.worker);
        cell(tr, fmtTime(t.started_at));
        rows[t.task_id] = { bar: bar, phase: ph, message: msg };
        return tr;
      });
      fill("fi-expiring", "fi-expiring-empty", board.expiring, function (t) {
        var tr = document.createElement("tr");
        cell(tr, link(t.task_id));
        cell(tr, t.name);
        var td = cell(tr, fmtDuration(t.expires_in_s));
        td.className = "fi-countdown";
        td.setAttribute("data-expires-at", t.result_expires_at || "");
        cell(tr, fmtTime(t.result_expires_at));
        cell(tr, fmtBytes(t.result_info.bytes));
        return tr;
      });
      fill("fi-finished", "fi-finished-empty", board.finished, function (t) {
        var tr = document.createElement("tr");
        cell(tr, link(t.task_id));
        cell(tr, t.name);
        cell(tr, badge(t.phase));
        cell(tr, fmtTime(t.completed_at));
        cell(tr, t.runtime_s === null ? null : t.runtime_s.toFixed(3) + " s");
        var what = t.expired ? "expired" : (t.result_available ? fmtBytes(t.result_info.bytes) : (t.result_info.reason || "\u2014"));
        cell(tr, what);
        var a = document.createElement("a");
        a.href = flowerBase + encodeURIComponent(t.task_id);
        a.textContent = "Flower";
        a.title = "Flower's own page for this task";
        cell(tr, a);
        return tr;
      });
    }

    function applyProgress(batch) {
      window.fileintelProgressBatches = (window.fileintelProgressBatches || 0) + 1;
      batch.tasks.forEach(function (u) {
        var row = rows[u.task_id];
        if (!row) { return; }
        setBadge(row.phase, u.phase);
        if (u.progress) {
          setBar(row.bar, u.progress.percent);
          row.message.textContent = u.progress.message || "";
        }
      });
    }

    connect(root, function (kind, data) {
      if (kind === "board" || kind === "poll") { renderBoard(data); }
      else if (kind === "progress") { applyProgress(data); }
      return false;
    }, null);
  }

  /* ---------------------------------------------------------------- countdowns */

  function tickCountdowns() {
    var now = Date.now();
    var els = document.querySelectorAll(".fi-countdown[data-expires-at]");
    Array.prototype.forEach.call(els, function (el) {
      var at = Date.parse(el.getAttribute("data-expires-at"));
      if (isNaN(at)) { return; }
      var left = (at - now) / 1000;
      el.textContent = left > 0 ? fmtDuration(left) : "expired";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var task = byId("fi-task");
    var board = byId("fi-board");
    if (task) { taskPage(task); }
    if (board) { boardPage(board); }
    tickCountdowns();
    window.setInterval(tickCountdowns, 1000);
    document.documentElement.setAttribute("data-fileintel-ready", "1");
  });
})();
