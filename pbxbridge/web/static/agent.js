/* pbxbridge agent desk: live screen pops over server-sent events, wrap-up.
 *
 * Every text from a pop (caller names are attacker-controlled) goes into the
 * page with textContent or as attribute values set through the DOM; nothing is
 * ever parsed as HTML. Links are opened only for http(s) URLs.
 */
(function () {
  "use strict";

  var desk = document.getElementById("desk");
  if (!desk) { return; }
  var L = JSON.parse(document.getElementById("labels").textContent);
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var journal = desk.getAttribute("data-journal") === "1";
  var maxNote = parseInt(desk.getAttribute("data-max-note") || "500", 10);
  var callsEl = document.getElementById("calls");
  var idleEl = document.getElementById("idle");
  var statusEl = document.getElementById("status");
  var flashEl = document.getElementById("flash");
  var recentEl = document.getElementById("recent");
  var recentList = document.getElementById("recent-list");
  var journalMissing = document.getElementById("journal-missing");
  var MAX_CARDS = 20;
  var cards = new Map();
  var source = null;
  var signedOut = false;

  function now() { return performance.timeOrigin + performance.now(); }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function duration(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var m = Math.floor(s / 60);
    var rest = s % 60;
    return m + ":" + (rest < 10 ? "0" : "") + rest;
  }

  function safeUrl(value) {
    if (typeof value !== "string" || !value) { return null; }
    try {
      var url = new URL(value);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function setStatus(kind, text) {
    statusEl.className = "status " + kind;
    statusEl.textContent = text;
  }

  function flash(kind, text) {
    flashEl.className = "msg " + kind;
    flashEl.textContent = text;
    flashEl.hidden = !text;
  }

  function updateIdle() {
    idleEl.hidden = cards.size > 0;
  }

  function fact(label, value, cls) {
    var wrap = el("div");
    wrap.appendChild(el("dt", null, label));
    var dd = el("dd", cls || null, value);
    wrap.appendChild(dd);
    return { wrap: wrap, dd: dd };
  }

  /* Put values into a label's {name} places; the result is only ever set as
   * textContent (a hostile value stays text). */
  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, function (m, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : m;
    });
  }

  /* Build the card for a call once; later pops update its parts in place so
   * that a note being typed survives the state change. */
  function buildCard(pop) {
    var card = { pop: pop, state: "", waitedBase: 0, receivedAt: now(), answered: false };
    var root = el("article", "call");
    root.setAttribute("data-call-id", pop.call_id);
    root.setAttribute("data-shown-at", String(now()));

    var head = el("div", "call-head");
    card.stateEl = el("span", "call-state");
    head.appendChild(card.stateEl);
    if (pop.via_115) {
      var badge = el("span", "badge b115", L.via115);
      badge.title = L.via115_title;
      head.appendChild(badge);
    }
    var tenant = pop.tenant || {};
    var vh = pop.virtual_hold;
    if (vh) {
      // A virtual hold's callback leg: the agent calls the citizen back.
      head.appendChild(el("span", "badge bcallback", L.callback_leg));
    }
    root.appendChild(head);
    if (vh) {
      root.appendChild(el("p", "callback-leg-text", fill(L.callback_leg_title, {
        tenant: tenant.name || tenant.id || "",
        number: vh.number || L.withheld,
        minutes: String(Math.max(0, Math.floor((vh.waited_s || 0) / 60)))
      })));
    }
    if (pop.open_callback) {
      root.appendChild(el("p", "open-callback", L.open_callback + ": " + pop.open_callback));
    }

    root.appendChild(el("h2", "tenant-name", tenant.name || tenant.id || ""));
    var greeting = el("p", "greeting");
    greeting.appendChild(el("span", "label", L.greeting));
    greeting.appendChild(el("span", "greeting-text", tenant.greeting ? "„" + tenant.greeting + "“" : ""));
    root.appendChild(greeting);

    var facts = el("dl", "facts");
    var caller = pop.caller || {};
    var who = fact(L.caller, callerText(caller), caller.number ? "caller-number" : "caller-number withheld");
    if (caller.name) { who.wrap.appendChild(el("dd", "caller-name", caller.name)); }
    facts.appendChild(who.wrap);
    var waited = fact(L.waited, "0:00", "waited");
    card.waitedEl = waited.dd;
    facts.appendChild(waited.wrap);
    var repeat = pop.repeat_calls_7d;
    var rep = fact(L.repeat, repeat === null || repeat === undefined ? L.repeat_unknown : repeat,
                   "repeat" + (repeat >= 3 ? " many" : ""));
    facts.appendChild(rep.wrap);
    facts.appendChild(fact(L.did, pop.did || "", "did").wrap);
    root.appendChild(facts);

    var kb = safeUrl(pop.kb_url);
    if (kb) {
      var link = el("a", "kb", L.kb);
      link.href = kb;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      root.appendChild(link);
    }
    card.root = root;
    return card;
  }

  function addWrapup(card) {
    if (card.form || !journal) { return; }
    var form = el("form", "wrapup-form");
    form.noValidate = true;
    var noteId = "note-" + card.pop.call_id.replace(/[^A-Za-z0-9_-]/g, "_");
    var noteLabel = el("label", null, L.note);
    noteLabel.htmlFor = noteId;
    var note = el("textarea", "note");
    note.id = noteId;
    note.name = "note";
    note.maxLength = maxNote;
    var count = el("div", "count", "0/" + maxNote);
    note.addEventListener("input", function () { count.textContent = note.value.length + "/" + maxNote; });
    var numberLabel = el("label", null, L.callback_number);
    numberLabel.htmlFor = noteId + "-number";
    var number = el("input", "callback-number");
    number.id = noteId + "-number";
    number.name = "callback_number";
    number.type = "tel";
    number.maxLength = 40;
    number.autocomplete = "off";
    number.value = (card.pop.caller && card.pop.caller.number) || "";
    var buttons = el("div", "buttons");
    var resolved = el("button", "resolved", L.resolved);
    resolved.type = "button";
    var callback = el("button", "callback", L.callback);
    callback.type = "button";
    buttons.appendChild(resolved);
    buttons.appendChild(callback);
    var error = el("p", "wrapup-error");
    error.setAttribute("role", "alert");
    [noteLabel, note, count, numberLabel, number, buttons, error].forEach(function (n) { form.appendChild(n); });
    form.addEventListener("submit", function (ev) { ev.preventDefault(); });
    resolved.addEventListener("click", function () { submit(card, "resolved"); });
    callback.addEventListener("click", function () { submit(card, "callback"); });
    card.form = { root: form, note: note, number: number, error: error, buttons: [resolved, callback] };
    card.root.appendChild(form);
  }

  function setState(card, state) {
    card.state = state;
    card.root.className = "call " + state + (card.pop.virtual_hold ? " callback-leg" : "");
    card.root.setAttribute("data-state", state);
    card.stateEl.textContent = state === "ringing" ? L.ringing : state === "answered" ? L.answered : L.wrapup;
    if (state !== "ringing") { addWrapup(card); }
    tickCard(card);
  }

  function tickCard(card) {
    var waited = card.waitedBase;
    if (card.state === "ringing") { waited += (now() - card.receivedAt) / 1000; }
    card.waitedEl.textContent = duration(waited);
  }

  function removeCard(callId) {
    var card = cards.get(callId);
    if (!card) { return; }
    card.root.remove();
    cards.delete(callId);
    updateIdle();
  }

  /* Apply one pop (idempotent: pops arrive at least once). */
  function apply(pop, ageS, state) {
    if (!pop || typeof pop.call_id !== "string") { return; }
    var card = cards.get(pop.call_id);
    var event = state || pop.event;
    if (event === "ended") {
      if (card && (card.state === "answered" || card.state === "wrapup")) {
        setState(card, "wrapup");
      } else {
        removeCard(pop.call_id);
      }
      return;
    }
    if (event === "ringing" && card && card.state !== "ringing") { return; }
    if (!card) {
      card = buildCard(pop);
      cards.set(pop.call_id, card);
      callsEl.insertBefore(card.root, callsEl.firstChild);
      // Bounded like the server's desk: the oldest calls leave first.
      while (cards.size > MAX_CARDS) { removeCard(cards.keys().next().value); }
      updateIdle();
    }
    card.pop = pop;
    card.receivedAt = now() - (ageS || 0) * 1000;
    card.waitedBase = typeof pop.waited_s === "number" ? pop.waited_s : 0;
    setState(card, event === "wrapup" ? "wrapup" : event);
  }

  function applySnapshot(snap) {
    journal = !!snap.journal;
    journalMissing.hidden = journal;
    var keep = new Set();
    (snap.cards || []).forEach(function (c) {
      keep.add(c.pop.call_id);
      var existing = cards.get(c.pop.call_id);
      if (existing && existing.state === c.state) { return; }
      apply(c.pop, c.age_s, c.state);
    });
    Array.from(cards.keys()).forEach(function (id) { if (!keep.has(id)) { removeCard(id); } });
    updateIdle();
  }

  // What the agent's phone shows too: the number, "invalid number" for a
  // caller string that is none, else "withheld".
  function callerText(caller) {
    return caller.number || (caller.invalid ? L.invalid_number : L.withheld);
  }

  function remember(card, text) {
    var tenant = (card.pop.tenant && card.pop.tenant.name) || "";
    var caller = callerText(card.pop.caller || {});
    var item = el("li", null, tenant + " · " + caller + " · " + text);
    recentList.insertBefore(item, recentList.firstChild);
    while (recentList.children.length > 5) { recentList.removeChild(recentList.lastChild); }
    recentEl.hidden = false;
  }

  function submit(card, disposition) {
    var f = card.form;
    f.error.textContent = "";
    f.buttons.forEach(function (b) { b.disabled = true; });
    flash("info", L.saving);
    var body = new URLSearchParams();
    body.set("call_id", card.pop.call_id);
    body.set("disposition", disposition);
    body.set("note", f.note.value);
    if (disposition === "callback") { body.set("callback_number", f.number.value); }
    fetch("disposition", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
      body: body
    }).then(function (resp) {
      return resp.json().then(function (data) { return { status: resp.status, data: data }; });
    }).then(function (r) {
      if (r.data && r.data.ok) {
        flash("ok", r.data.message);
        remember(card, r.data.message);
        removeCard(card.pop.call_id);
        return;
      }
      var text = (r.data && r.data.error) || (L.error + " " + r.status);
      f.error.textContent = text;
      flash("error", text);
      if (r.status === 401) { signOut(); }
    }).catch(function (err) {
      f.error.textContent = L.error + ": " + err;
      flash("error", L.error + ": " + err);
    }).then(function () {
      f.buttons.forEach(function (b) { b.disabled = false; });
    });
  }

  function signOut() {
    signedOut = true;
    if (source) { source.close(); }
    setStatus("down", L.signed_out);
    flash("error", L.signed_out);
  }

  function connect() {
    if (signedOut) { return; }
    source = new EventSource("events");
    source.addEventListener("open", function () { setStatus("live", L.live); });
    source.addEventListener("snapshot", function (ev) { applySnapshot(JSON.parse(ev.data)); });
    source.addEventListener("pop", function (ev) { apply(JSON.parse(ev.data)); });
    source.addEventListener("done", function (ev) { removeCard(JSON.parse(ev.data).call_id); });
    source.addEventListener("error", function () {
      setStatus("down", L.reconnecting);
      if (source.readyState === EventSource.CLOSED) {
        // Refused (not a dropped connection): signed out, or the server is away.
        fetch("state", { credentials: "same-origin", headers: { "Accept": "application/json" } })
          .then(function (resp) {
            if (resp.status === 401) { signOut(); } else { setTimeout(connect, 2000); }
          })
          .catch(function () { setTimeout(connect, 2000); });
      }
    });
  }

  setInterval(function () { cards.forEach(tickCard); }, 250);
  updateIdle();
  connect();
}());
