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

  /* The pages' formats: the same wording as flower_fileintel/formatting.py (and the CLI). */

  function absolute(iso) {
    if (!iso) { return "\u2014"; }
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return String(iso); }
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) { return "\u2014"; }
    var s = Math.max(0, Number(seconds));
    if (s < 1) { return s < 0.01 ? Number((s * 1000).toPrecision(2)) + " ms" : Math.round(s * 1000) + " ms"; }
    if (s < 10) { return (Math.round(s * 10) / 10).toFixed(1).replace(/\.0$/, "") + " s"; }
    var total = Math.round(s);
    var minutes = Math.floor(total / 60), secs = total % 60;
    if (minutes === 0 || (minutes === 1 && secs)) { return total + " s"; }
    if (minutes < 120 && (minutes % 60 || secs)) { return minutes + " min" + (secs ? " " + secs + " s" : ""); }
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 48 && (hours % 24 || minutes)) { return hours + " h" + (minutes ? " " + minutes + " min" : ""); }
    var days = Math.floor(hours / 24);
    hours = hours % 24;
    return days + " d" + (hours ? " " + hours + " h" : "");
  }

  function relative(iso, nowMs) {
    if (!iso) { return "\u2014"; }
    var at = Date.parse(iso);
    if (isNaN(at)) { return String(iso); }
    var delta = (at - (nowMs === undefined ? Date.now() : nowMs)) / 1000;
    if (Math.abs(delta) < 1) { return "just now"; }
    var span = duration(Math.round(Math.abs(delta)));
    return delta > 0 ? "in " + span : span + " ago";
  }

  function bytes(n) {
    if (n === null || n === undefined) { return "\u2014"; }
    if (n < 1024) { return Math.floor(n) + " bytes"; }
    var units = ["KiB", "MiB", "GiB"], size = n / 1024, i = 0;
    while (size >= 1024 && i < units.length - 1) { size /= 1024; i += 1; }
    return size.toFixed(1) + " " + units[i];
  }

  function percent(value) {
    if (value === null || value === undefined || !isFinite(value)) { return "\u2014"; }
    return Math.floor(Math.max(0, Math.min(100, Number(value)))) + " %";
  }

  window.fileintelFormat = {
    absolute: absolute, duration: duration, relative: relative, bytes: bytes, percent: percent
  };

  /* A <time> showing "3 min ago", the absolute time on hover; tick() keeps it current. */
  function when(iso) {
    var t = document.createElement("time");
    setWhen(t, iso);
    return t;
  }

  function setWhen(el, iso) {
    if (!el) { return; }
    if (!iso) {
      el.removeAttribute("datetime");
      el.removeAttribute("title");
      el.textContent = "\u2014";
      return;
    }
    el.classList.add("fi-when");
    el.setAttribute("datetime", iso);
    el.title = absolute(iso);
    el.textContent = relative(iso);
  }

  function progressPercent(doc) {
    var p = doc.progress;
    if (p && p.percent !== null && p.percent !== undefined) { return p.percent; }
    return doc.phase === "succeeded" ? 100 : 0;
  }

  function progressLabel(p) {
    if (!p) { return "no progress reported"; }
    if (p.percent !== null && p.percent !== undefined) { return percent(p.percent); }
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
    var workerBase = root.getAttribute("data-worker-base");

    function setWorker(dd, worker) {
      if (!dd || dd.getAttribute("data-worker") === (worker || "")) { return; }
      dd.setAttribute("data-worker", worker || "");
      dd.textContent = "";
      if (!worker) { dd.textContent = "\u2014"; return; }
      var a = document.createElement("a");
      a.href = workerBase + encodeURIComponent(worker);
      a.textContent = worker;
      a.title = "Flower's page for this worker";
      dd.appendChild(a);
    }
    var fill = byId("fi-progress-fill");
    var bar = byId("fi-progressbar");

    function apply(doc) {
      window.fileintelLastDoc = doc;
      var queued = byId("fi-queued");  // the "queued for" notice: only while it is queued
      if (queued) { queued.classList.toggle("d-none", doc.phase !== "queued"); }
      setBadge(byId("fi-phase"), doc.phase);
      setText(byId("fi-state"), doc.state || "no state");
      setText(byId("fi-name"), doc.name || "(name not known)");
      setWorker(byId("fi-worker"), doc.worker);
      setWhen(byId("fi-queued-at"), doc.queued_at);
      setWhen(byId("fi-started-at"), doc.started_at);
      setWhen(byId("fi-completed-at"), doc.completed_at);
      setText(byId("fi-runtime"), doc.runtime_s === null ? null : duration(doc.runtime_s));
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
      if (upd) {
        upd.textContent = "";
        if (doc.progress && doc.progress.updated_at) {
          upd.appendChild(document.createTextNode("updated "));
          upd.appendChild(when(doc.progress.updated_at));
        }
      }
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
      if (doc.phase !== "unknown" && byId("fi-unknown") && !wasReady) {
        // It became known: reload once, so its details replace the "unknown" explanation.
        wasReady = true;
        window.setTimeout(function () { window.location.reload(); }, 300);
        return true;
      }
      var done = apply(doc);
      if (done && !wasReady) {
        // Final: reload once so the result / error / expiry are rendered by the server.
        wasReady = true;
        window.setTimeout(function () { window.location.reload(); }, 300);
      }
      return done;
    }

    if (!wasReady) { connect(root, onData, null); }
    keepButton(root);
  }

  /* "Keep 7 days": POST to the keep API, authenticated as Flower's own task actions (the
     _xsrf cookie echoed back as Flower's pages do); shows the new expiry or the error. */
  function keepButton(root) {
    var button = byId("fi-keep");
    var out = byId("fi-keep-status");
    if (!button || !out) { return; }
    function cookie(name) {
      var m = document.cookie.match("(^|;)\\s*" + name + "=([^;]*)");
      return m ? decodeURIComponent(m[2]) : "";
    }
    button.addEventListener("click", function () {
      button.disabled = true;
      out.textContent = "Keeping\u2026";
      out.removeAttribute("data-error");
      fetch(root.getAttribute("data-keep-url"), {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Accept": "application/json",
          "Content-Type": "application/x-www-form-urlencoded",
          "X-XSRFToken": cookie("_xsrf")
        },
        body: "for=" + encodeURIComponent(button.getAttribute("data-keep-for"))
      }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          if (!r.ok) { throw new Error(body.message || ("HTTP " + r.status)); }
          return body;
        });
      }).then(function (body) {
        var at = body.result_expires_at;
        out.textContent = at ? "Kept until " + absolute(at) + "." : (body.message || "Kept.");
        var dd = byId("fi-expires");
        var time = dd ? dd.querySelector("time") : null;
        if (time && at) { setWhen(time, at); }
        Array.prototype.forEach.call(document.querySelectorAll(".fi-countdown[data-expires-at]"), function (el) {
          if (at) { el.setAttribute("data-expires-at", at); }
        });
        var banner = byId("fi-expiring");
        var warning = parseFloat(root.getAttribute("data-expiry-warning"));
        if (banner && at && (Date.parse(at) - Date.now()) / 1000 > warning) { banner.classList.add("d-none"); }
      }).catch(function (err) {
        out.textContent = "Not kept: " + err.message;
        out.setAttribute("data-error", "1");
      }).then(function () { button.disabled = false; });
    });
  }

  /* ---------------------------------------------------------------- board */

  function boardPage(root) {
    var taskBase = root.getAttribute("data-task-base");
    var flowerBase = root.getAttribute("data-flower-task-base");
    var rows = {};  // task id -> {bar, label, phase, message, stalled, updatedAt} of the running table
    var stalledAfter = null;  // the fileintel_stalled_after setting, from the snapshot

    /* The id as its first 8 characters (the whole id on hover, in the link and the copy). */
    function idCell(id) {
      var wrap = document.createElement("span");
      wrap.className = "fi-id";
      var a = document.createElement("a");
      a.href = taskBase + encodeURIComponent(id);
      var code = document.createElement("code");
      code.textContent = id.length > 12 ? id.slice(0, 8) + "\u2026" : id;
      code.title = id;
      a.appendChild(code);
      wrap.appendChild(a);
      wrap.appendChild(copyButton(id));
      return wrap;
    }

    function cell(tr, content, label) {
      var td = document.createElement("td");
      if (content instanceof Node) { td.appendChild(content); } else { setText(td, content); }
      if (label) { td.setAttribute("data-label", label); }
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
      var empty = byId(emptyId);
      empty.textContent = empty.getAttribute("data-empty") || "";
      empty.classList.remove("fi-loading");
      empty.classList.toggle("d-none", items.length > 0);
    }

    function setStalled(row) {
      var age = null;
      if (stalledAfter !== null && row.updatedAt) {
        var at = Date.parse(row.updatedAt);
        if (!isNaN(at)) { age = (Date.now() - at) / 1000; }
      }
      var show = age !== null && age > stalledAfter;
      row.stalled.classList.toggle("d-none", !show);
      if (show) {
        row.stalled.textContent = "no progress for " + duration(age);
        row.stalled.title = "last progress report: " + absolute(row.updatedAt);
      }
    }

    function renderBoard(board) {
      rows = {};
      lastSnapshotFinished = board.finished;
      stalledAfter = board.stalled_after_s === undefined ? null : board.stalled_after_s;
      setText(byId("fi-running-count"), board.running.length);
      fill("fi-running", "fi-running-empty", board.running, function (t) {
        var tr = document.createElement("tr");
        tr.setAttribute("data-task-id", t.task_id);
        cell(tr, idCell(t.task_id), "Task");
        cell(tr, t.name, "Name");
        var ph = badge(t.phase);
        cell(tr, ph, "Phase");
        var td = cell(tr, "", "Progress");
        td.textContent = "";
        var head = document.createElement("div");
        head.className = "fi-row-head";
        var label = document.createElement("span");
        label.className = "fi-percent";
        label.textContent = progressLabel(t.progress);
        var stalled = document.createElement("span");
        stalled.className = "badge fi-stalled d-none";
        head.appendChild(label);
        head.appendChild(stalled);
        var bar = makeBar(progressPercent(t), true);
        var msg = document.createElement("div");
        msg.className = "fi-row-message";
        msg.textContent = (t.progress && t.progress.message) || "";
        td.appendChild(head);
        td.appendChild(bar);
        td.appendChild(msg);
        cell(tr, t.worker, "Worker");
        var started = when(t.started_at);
        var elapsed = document.createElement("span");
        elapsed.className = "fi-elapsed";
        if (t.started_at) { elapsed.setAttribute("data-since", t.started_at); }
        elapsed.textContent = t.elapsed_s === null || t.elapsed_s === undefined ? "\u2014" : duration(t.elapsed_s);
        cell(tr, elapsed, "Running for");
        cell(tr, started, "Started");
        var row = { bar: bar, label: label, phase: ph, message: msg, stalled: stalled,
                    updatedAt: t.progress && t.progress.updated_at };
        rows[t.task_id] = row;
        if (t.stalled_for_s !== null && t.stalled_for_s !== undefined) { setStalled(row); }
        return tr;
      });
      // Lost: celery_ext decided it (no liveness beat from its worker); it will not finish.
      var lost = board.lost || [];
      setText(byId("fi-lost-count"), lost.length);
      var lostHint = byId("fi-lost-hint");
      if (lostHint) { lostHint.hidden = lost.length === 0; }  // what to do, only when there is something to do
      fill("fi-lost", "fi-lost-empty", lost, function (t) {
        var tr = document.createElement("tr");
        tr.setAttribute("data-task-id", t.task_id);
        cell(tr, idCell(t.task_id), "Task");
        cell(tr, t.name, "Name");
        cell(tr, t.worker || "\u2014", "Worker");
        // "3 min ago" (the time on hover), ticking like the other times on the board.
        cell(tr, t.worker_last_seen_at ? when(t.worker_last_seen_at) : "no liveness beat", "Worker last seen");
        cell(tr, t.progress ? progressLabel(t.progress) : "\u2014", "Last progress").classList.add("fi-num");
        cell(tr, when(t.started_at), "Started");
        return tr;
      });
      var stuck = board.stuck || [];
      setText(byId("fi-stuck-count"), stuck.length);
      fill("fi-stuck", "fi-stuck-empty", stuck, function (t) {
        var tr = document.createElement("tr");
        tr.setAttribute("data-task-id", t.task_id);
        cell(tr, idCell(t.task_id), "Task");
        cell(tr, t.name, "Name");
        var queue = document.createElement("code");
        queue.className = "fi-queue";
        queue.textContent = t.queue || "\u2014";
        cell(tr, queue, "Queue");
        var age = document.createElement("span");
        age.className = "fi-elapsed";
        if (t.queued_at) { age.setAttribute("data-since", t.queued_at); }
        age.textContent = duration(t.queued_for_s);
        cell(tr, age, "Queued for");
        var consumers = t.consumers || { state: "unknown", text: "not known" };
        var note = document.createElement("span");
        note.className = "fi-consumers fi-consumers-" + consumers.state;
        note.textContent = consumers.text;
        cell(tr, note, "Consumers");
        cell(tr, when(t.queued_at), "Sent");
        return tr;
      });
      fill("fi-failures", "fi-failures-empty", board.failures || [], function (t) {
        var tr = document.createElement("tr");
        tr.setAttribute("data-task-id", t.task_id);
        cell(tr, idCell(t.task_id), "Task");
        cell(tr, t.name, "Name");
        cell(tr, badge(t.phase), "Phase");
        var error = t.error ? (t.error.type || "") + (t.error.message ? ": " + t.error.message : "") : "\u2014";
        cell(tr, error, "Error").classList.add("fi-error-text");
        cell(tr, when(t.completed_at), "Completed");
        return tr;
      });
      fill("fi-expiring", "fi-expiring-empty", board.expiring, function (t) {
        var tr = document.createElement("tr");
        cell(tr, idCell(t.task_id), "Task");
        cell(tr, t.name, "Name");
        var td = cell(tr, duration(t.expires_in_s), "Expires in");
        td.classList.add("fi-countdown");
        td.setAttribute("data-expires-at", t.result_expires_at || "");
        td.title = absolute(t.result_expires_at);
        cell(tr, bytes(t.result_info.bytes), "Size");
        // Fetched through the CLI's `result` or the API: someone has it. Nobody: keep or fetch it.
        if (t.fetched_at) { cell(tr, when(t.fetched_at), "Fetched"); }
        else {
          var nobody = document.createElement("span");
          nobody.className = "badge fi-unfetched";
          nobody.textContent = "nobody fetched it";
          cell(tr, nobody, "Fetched");
          tr.classList.add("fi-row-unfetched");
        }
        return tr;
      });
      var unfetched = board.expiring_unfetched || 0;
      var unfetchedNote = byId("fi-expiring-unfetched");
      if (unfetchedNote) { unfetchedNote.textContent = unfetched ? "; " + unfetched + " never fetched" : ""; }
      if (!filters.active()) { renderFinished(board.finished, null); }
      else { filters.refresh(); }
    }

    function renderFinished(items, pageInfo) {
      fill("fi-finished", "fi-finished-empty", items, function (t) {
        var tr = document.createElement("tr");
        tr.setAttribute("data-task-id", t.task_id);
        cell(tr, idCell(t.task_id), "Task");
        cell(tr, t.name, "Name");
        cell(tr, badge(t.phase), "Phase");
        cell(tr, when(t.completed_at), "Completed");
        var runtime = t.shown_runtime_s === undefined ? t.runtime_s : t.shown_runtime_s;
        cell(tr, runtime === null ? null : duration(runtime), "Runtime").classList.add("fi-num");
        var what = t.expired ? "expired" : (t.result_available ? bytes(t.result_info.bytes) : (t.result_info.reason || "\u2014"));
        cell(tr, what, "Result");
        var a = document.createElement("a");
        a.href = flowerBase + encodeURIComponent(t.task_id);
        a.textContent = "Flower";
        a.title = "Flower's own page for this task";
        cell(tr, a, "");
        return tr;
      });
      if (pageInfo && !items.length) { byId("fi-finished-empty").textContent = "No finished tasks match these filters on this page."; }
      filters.showPage(pageInfo);
    }

    /* Filters and paging of "recently finished": served by finished.json over the whole
       finished index; without them the table follows the live snapshot. */
    var filters = (function () {
      var form = byId("fi-finished-filters");
      var url = root.getAttribute("data-finished-url");
      var state = { phase: "", name: "", q: "", page: 1 };
      var pageSize = parseInt(root.getAttribute("data-page-size") || "25", 10);
      var inFlight = false, again = false;
      var params = new URLSearchParams(window.location.search);
      ["phase", "name", "q"].forEach(function (k) { state[k] = params.get(k) || ""; });
      state.page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
      if (form) {
        form.elements.phase.value = state.phase;
        form.elements.name.value = state.name;
        form.elements.q.value = state.q;
      }

      function active() { return !!(state.phase || state.name || state.q || state.page > 1); }

      function query() {
        var p = new URLSearchParams();
        ["phase", "name", "q"].forEach(function (k) { if (state[k]) { p.set(k, state[k]); } });
        if (state.page > 1) { p.set("page", String(state.page)); }
        return p;
      }

      function refresh() {
        if (inFlight) { again = true; return; }
        inFlight = true;
        var status = byId("fi-finished-status");
        fetch(url + "?" + query().toString(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
          .then(function (r) {
            return r.json().then(function (body) {
              if (!r.ok) { throw new Error(body.message || ("HTTP " + r.status)); }
              return body;
            });
          })
          .then(function (body) { status.textContent = ""; renderFinished(body.tasks, body); })
          .catch(function (err) { status.textContent = "Cannot filter: " + err.message; })
          .then(function () {
            inFlight = false;
            window.fileintelFinishedLoads = (window.fileintelFinishedLoads || 0) + 1;
            if (again) { again = false; refresh(); }
          });
      }

      function apply() {
        var p = query().toString();
        window.history.replaceState(null, "", window.location.pathname + (p ? "?" + p : ""));
        if (active()) { refresh(); } else { renderFinished(lastSnapshotFinished, null); }
      }

      function showPage(info) {
        var label = byId("fi-finished-page");
        var prev = byId("fi-finished-prev"), next = byId("fi-finished-next");
        if (!label) { return; }
        if (!info) {
          label.textContent = "";
          prev.disabled = true;
          next.disabled = lastSnapshotFinished.length < pageSize;  // a full page: maybe more
          return;
        }
        label.textContent = "page " + info.page + (info.has_next ? "" : " (last)");
        prev.disabled = info.page <= 1;
        next.disabled = !info.has_next;
      }

      if (form) {
        var timer = null;
        form.addEventListener("submit", function (e) { e.preventDefault(); });
        form.addEventListener("input", function () {
          window.clearTimeout(timer);
          timer = window.setTimeout(function () {
            state.phase = form.elements.phase.value;
            state.name = form.elements.name.value.trim();
            state.q = form.elements.q.value.trim();
            state.page = 1;
            apply();
          }, 250);
        });
        byId("fi-finished-prev").addEventListener("click", function () {
          if (state.page > 1) { state.page -= 1; apply(); }
        });
        byId("fi-finished-next").addEventListener("click", function () { state.page += 1; apply(); });
      }
      return { active: active, refresh: refresh, showPage: showPage };
    })();
    var lastSnapshotFinished = [];

    function applyProgress(batch) {
      window.fileintelProgressBatches = (window.fileintelProgressBatches || 0) + 1;
      batch.tasks.forEach(function (u) {
        var row = rows[u.task_id];
        if (!row) { return; }
        setBadge(row.phase, u.phase);
        if (u.progress) {
          setBar(row.bar, u.progress.percent);
          row.label.textContent = progressLabel(u.progress);
          row.message.textContent = u.progress.message || "";
          row.updatedAt = u.progress.updated_at || new Date().toISOString();
          setStalled(row);
        }
      });
    }

    window.setInterval(function () {
      Object.keys(rows).forEach(function (id) { setStalled(rows[id]); });
    }, 1000);

    connect(root, function (kind, data) {
      if (kind === "board" || kind === "poll") { renderBoard(data); }
      else if (kind === "progress") { applyProgress(data); }
      return false;
    }, null);
  }

  /* ---------------------------------------------------------------- copy buttons */

  function copyButton(text) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-link btn-sm fi-copy";
    button.setAttribute("data-copy", text);
    button.title = "Copy the task id";
    button.setAttribute("aria-label", "Copy the task id " + text);
    button.textContent = "copy";
    return button;
  }

  function copy(button) {
    var text = button.getAttribute("data-copy");
    function done(ok) {
      button.textContent = ok ? "copied" : "copy failed";
      button.setAttribute("data-copied", ok ? "1" : "0");
      window.setTimeout(function () { button.textContent = "copy"; }, 1500);
    }
    function fallback() {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "fi-offscreen";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      done(ok);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
    } else {
      fallback();
    }
  }

  document.addEventListener("click", function (e) {
    var target = e.target instanceof Element ? e.target.closest(".fi-copy[data-copy]") : null;
    if (target) { e.preventDefault(); copy(target); }
  });

  /* ---------------------------------------------------------------- clocks */

  function tick() {
    var now = Date.now();
    Array.prototype.forEach.call(document.querySelectorAll(".fi-countdown[data-expires-at]"), function (el) {
      var at = Date.parse(el.getAttribute("data-expires-at"));
      if (isNaN(at)) { return; }
      var left = (at - now) / 1000;
      el.textContent = left > 0 ? duration(left) : "expired";
    });
    Array.prototype.forEach.call(document.querySelectorAll("time.fi-when[datetime]"), function (el) {
      el.textContent = relative(el.getAttribute("datetime"), now);
    });
    Array.prototype.forEach.call(document.querySelectorAll(".fi-elapsed[data-since]"), function (el) {
      var since = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(since)) { el.textContent = duration((now - since) / 1000); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var task = byId("fi-task");
    var board = byId("fi-board");
    if (task) { taskPage(task); }
    if (board) { boardPage(board); }
    tick();
    window.setInterval(tick, 1000);
    document.documentElement.setAttribute("data-fileintel-ready", "1");
  });
})();
