// The dashboard, live: follows the hub's channels over /ws and updates the page in place.
//
// - Each channel's last message id is kept, and sent back when the socket reconnects
//   (exponential backoff with jitter), so the server replays what was missed.
// - When that is not possible (a first connection, a channel never heard from, or a
//   `resync`: the gap is older than the history, or the server restarted), the page's
//   sections are fetched again and swapped in, after the subscriptions are in place;
//   messages arriving meanwhile wait and are applied on top (they carry whole values,
//   so applying one twice is harmless).
"use strict";

(() => {
  const CHANNELS = JSON.parse(document.body.dataset.channels);
  const PER_STATE = Number(document.body.dataset.perState);
  const BACKOFF_MS = { first: 500, cap: 15000 };
  const DESCENDING = { open: false, locked: true, settled: true, voided: true };
  const MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");

  const lastIds = {};
  let attempt = 0;
  let stale = true; // the page may lack changes: reload its sections once subscribed
  let reloading = false;
  let reloadAgain = false;
  let waiting = []; // messages that arrived during a reload

  // -- connection ------------------------------------------------------------------

  function connect() {
    const url = new URL("/ws", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url);
    const unconfirmed = new Set(CHANNELS);
    socket.onopen = () => {
      if (CHANNELS.some((channel) => !(channel in lastIds))) stale = true;
      for (const channel of CHANNELS) {
        socket.send(JSON.stringify({ type: "subscribe", channel, last_id: lastIds[channel] }));
      }
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "message") {
        lastIds[frame.channel] = frame.id;
        if (reloading) waiting.push(frame);
        else apply(frame);
      } else if (frame.type === "resync") {
        if (frame.latest) lastIds[frame.channel] = frame.latest;
        else delete lastIds[frame.channel];
        reload();
      } else if (frame.type === "subscribed") {
        unconfirmed.delete(frame.channel);
        if (unconfirmed.size === 0) {
          attempt = 0;
          showConnection("live");
          if (stale) reload();
        }
      } else if (frame.type === "error") {
        console.warn("live channel refused", frame);
      }
    };
    socket.onclose = () => {
      showConnection("offline");
      const ceiling = Math.min(BACKOFF_MS.cap, BACKOFF_MS.first * 2 ** attempt++);
      setTimeout(connect, ceiling / 2 + Math.random() * (ceiling / 2));
    };
  }

  function showConnection(state) {
    const badge = document.getElementById("live");
    badge.className = `state ${state}`;
    badge.textContent = state;
    document.body.dataset.live = state;
  }

  async function reload() {
    if (reloading) {
      reloadAgain = true;
      return;
    }
    reloading = true;
    try {
      do {
        reloadAgain = false;
        const response = await fetch(location.pathname, { cache: "no-store" });
        if (!response.ok) throw new Error(`GET ${location.pathname}: ${response.status}`);
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const id of ["services", "markets"]) {
          document.getElementById(id).replaceWith(document.adoptNode(fresh.getElementById(id)));
        }
      } while (reloadAgain);
      stale = false;
    } catch (error) {
      console.warn("reload failed; again at the next connection", error);
    } finally {
      reloading = false;
      const queued = waiting;
      waiting = [];
      queued.forEach(apply);
    }
  }

  // -- applying messages -----------------------------------------------------------

  function apply(frame) {
    const data = frame.data;
    if (frame.channel === "markets") applyMarket(data);
    else if (frame.channel === "services") applyService(data);
    else for (const card of cards(`[data-game-id="${data.id}"]`)) fillGame(card, data);
  }

  function cards(selector) {
    return document.querySelectorAll(`#markets ${selector}`);
  }

  function applyMarket(update) {
    const market = update.market;
    let card = cards(`[data-market-id="${update.market_id}"]`)[0];
    if (!card) card = fromTemplate("market-card");
    card.dataset.marketId = market.id;
    card.dataset.gameId = market.game.id;
    card.dataset.state = update.state;
    setState(card.querySelector(".state"), update.state);
    fillGame(card, market.game);
    const since = { settled: market.settled_at, voided: market.voided_at }[update.state];
    place(card, update.state, Date.parse(since || market.game.start_time));
  }

  function fillGame(card, game) {
    text(card, ".name", game.name);
    text(card, ".away", game.away.display_name);
    text(card, ".home", game.home.display_name);
    text(card, ".away-score", game.away_score);
    text(card, ".home-score", game.home_score);
    card.querySelector(".away").classList.toggle("winner", game.winner === "away");
    card.querySelector(".home").classList.toggle("winner", game.winner === "home");
    text(card, ".league", game.league.toUpperCase());
    text(card, ".start", utc(new Date(game.start_time)));
    text(card, ".status", game.status_detail || game.status);
  }

  function place(card, state, sort) {
    // Where the server would have put it: see ORDER in web/dashboard.py.
    const section = document.querySelector(`#markets [data-group="${state}"]`);
    const grid = section.querySelector(".markets");
    card.dataset.sort = sort;
    const after = (other) => (DESCENDING[state] ? Number(other.dataset.sort) < sort : Number(other.dataset.sort) > sort);
    const next = [...grid.children].find((other) => other !== card && after(other));
    const previous = card.parentElement;
    grid.insertBefore(card, next || null);
    while (grid.children.length > PER_STATE) grid.lastElementChild.remove();
    for (const changed of new Set([previous, grid])) if (changed) recount(changed.closest("section"));
  }

  function recount(section) {
    if (!section) return;
    const count = section.querySelector(".markets").children.length;
    section.querySelector(".count").textContent = count;
    section.querySelector(".none").hidden = count > 0;
  }

  function applyService(service) {
    let card = document.querySelector(`#services [data-service="${CSS.escape(service.name)}"]`);
    if (!card) {
      card = fromTemplate("service-card");
      card.dataset.service = service.name;
      card.querySelector("strong").textContent = service.name;
      document.getElementById("services").append(card);
    }
    setState(card.querySelector(".state"), service.state);
    text(card, ".reason", service.reason || "");
    text(card, ".error", service.error ? `last error: ${service.error}` : "");
  }

  // -- small helpers ---------------------------------------------------------------

  function fromTemplate(id) {
    return document.getElementById(id).content.firstElementChild.cloneNode(true);
  }

  function setState(badge, state) {
    badge.className = `state ${state}`;
    badge.textContent = state;
  }

  function text(root, selector, value) {
    const element = root.querySelector(selector);
    if (element.textContent !== String(value)) element.textContent = value;
  }

  function utc(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${MONTHS[date.getUTCMonth()]} ${pad(date.getUTCDate())} ${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}`;
  }

  connect();
})();
