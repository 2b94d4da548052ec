// The seat map page (issue 17, decision 0020). The facade serves it; it reads the seat map from the
// gateway's WebSocket (snapshot, then events applied per seat by version: seatmap.js), and holds and
// releases through the facade's REST routes with the signed-in user's token.
//
// URL parameters: `showtimeId` (default the demo's `showtime_123`), `gateway` (the WebSocket URL; default
// ws(s)://<this host>:3011/), and in the fragment `#token=<JWT>` (a deployment's own token for the user).

import { Api, describeError } from "./api.js";
import { LiveConnection } from "./live.js";
import { SeatMap, seatName } from "./seatmap.js";

const DEMO_SHOWTIME = "showtime_123";
const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
const gatewayURL =
  params.get("gateway") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.hostname}:3011/`;

const $ = (id) => document.getElementById(id);
const ui = {
  connection: $("connection"),
  connectionText: $("connection-text"),
  showtimeForm: $("showtime-form"),
  showtime: $("showtime"),
  signinForm: $("signin-form"),
  user: $("user"),
  who: $("who"),
  counts: { available: $("count-available"), held: $("count-held"), purchased: $("count-purchased") },
  message: $("message"),
  selection: $("selection"),
  hold: $("hold"),
  clear: $("clear"),
  holds: $("holds"),
  map: $("map"),
};

const CODES = { available: "F", held: "H", purchased: "S", mine: "Y", selected: "✓" };
const WORDS = {
  available: "available",
  held: "held by someone",
  purchased: "purchased",
  mine: "in your hold",
  selected: "selected by you",
};

/** Numbers the tests and the benchmark read (`window.seatMapPage.stats`). */
const stats = {
  snapshots: 0,
  eventsReceived: 0,
  seatChanges: 0,
  applyMs: [],
  latencyMs: [],
  frames: 0,
  droppedFrames: 0,
  longestFrameMs: 0,
  loopLagMs: [],
  lastHoldAt: null,
  seatChangedAt: {},
  reset() {
    this.eventsReceived = 0;
    this.seatChanges = 0;
    this.applyMs = [];
    this.latencyMs = [];
    this.frames = 0;
    this.droppedFrames = 0;
    this.longestFrameMs = 0;
    this.loopLagMs = [];
  },
};

const state = {
  showtimeId: null,
  map: new SeatMap(),
  elements: new Map(),
  order: [],
  selected: new Set(),
  /** holdId -> {holdId, showtimeId, seatIds, expiresAt (ms)} */
  holds: new Map(),
  mySeats: new Set(),
  /** seats shown as held: checked against their holdExpiresAt every 250 ms */
  heldSeats: new Set(),
  counts: { available: 0, held: 0, purchased: 0 },
  dirty: new Set(),
  pendingEvents: [],
  flushScheduled: false,
  focusSeat: null,
  /** seats of the hold request in flight: its answer, not the map, tells what became of them */
  requested: new Set(),
  /** selected seats someone else took meanwhile, told once the frame is rendered */
  lost: [],
};

const api = new Api();
const live = new LiveConnection(gatewayURL, { onMessage, onStatus });

// MARK: - Connection and messages

function onStatus(status, detail) {
  const texts = {
    connecting: "Connecting…",
    subscribing: "Loading seats…",
    live: "Live",
    waiting: `Reconnecting in ${Math.ceil((detail ?? 0) / 1000)} s…`,
    reconnecting: "Reconnecting…",
    offline: "Offline",
  };
  ui.connection.dataset.state = status;
  ui.connectionText.textContent = texts[status] ?? status;
}

function onMessage(message) {
  if (message.showtimeId && message.showtimeId !== state.showtimeId) return;
  switch (message.type) {
    case "snapshot": {
      stats.snapshots += 1;
      const before = [...state.map.layout.keys()].join("\n");
      state.map.applySnapshot(message);
      if ([...state.map.layout.keys()].join("\n") !== before || state.elements.size === 0) buildMap();
      for (const seatId of state.map.layout.keys()) state.dirty.add(seatId);
      flush();
      onStatus("live");
      break;
    }
    case "resync":
      onStatus("subscribing");
      break;
    case "error":
      if (message.code === "SHOWTIME_NOT_FOUND") {
        ui.map.replaceChildren(paragraph(`No seat map for showtime ${state.showtimeId}.`, "placeholder"));
        state.elements.clear();
        onStatus("live");
      } else if (message.code === "SERVICE_UNAVAILABLE" || message.code === "UPSTREAM_TIMEOUT") {
        // No snapshot this time (the core is busy or away): ask again shortly, once per error.
        onStatus("waiting", 2000);
        const showtimeId = state.showtimeId;
        setTimeout(() => {
          if (state.showtimeId === showtimeId) live.follow(showtimeId);
        }, 2000);
      } else if (message.code !== "VALIDATION_FAILED" || message.showtimeId) {
        show(`The live connection reported: ${message.message} (${message.code}).`);
      }
      break;
    default: {
      if (!message.seatIds) return;
      const received = performance.now();
      stats.eventsReceived += 1;
      const changed = state.map.applyEvent(message);
      stats.applyMs.push(performance.now() - received);
      // The sweep's hold.expired for a seat of one of this user's holds: that hold is over, whatever this
      // browser's clock says (the database's decides).
      if (message.type === "hold.expired" && changed.some((seatId) => state.mySeats.has(seatId))) {
        for (const hold of state.holds.values()) {
          if (hold.showtimeId === state.showtimeId && hold.seatIds.some((seatId) => changed.includes(seatId))) {
            expireHold(hold);
          }
        }
        renderHolds();
      }
      if (changed.length > 0) {
        stats.seatChanges += changed.length;
        for (const seatId of changed) state.dirty.add(seatId);
        state.pendingEvents.push(received);
        scheduleFlush();
      }
    }
  }
}

// MARK: - Rendering

function paragraph(text, className) {
  const p = document.createElement("p");
  p.textContent = text;
  if (className) p.className = className;
  return p;
}

function label(seatId, index) {
  const meta = state.map.layout.get(seatId);
  if (meta?.number !== null && meta?.number !== undefined) return String(meta.number);
  const digits = /(\d+)$/.exec(seatId);
  return digits ? digits[1] : String(index + 1);
}

/** Sections, then rows, when the seat map has them; otherwise one grid, in the seat map's order. */
function buildMap() {
  state.elements.clear();
  state.order = [];
  state.counts = { available: 0, held: 0, purchased: 0 };
  state.heldSeats.clear();
  const fragment = document.createDocumentFragment();
  const seats = [...state.map.layout.entries()];
  const hasRows = seats.some(([, meta]) => meta.row !== null);
  if (!hasRows) {
    // Blocks of 100 seats: the browser skips laying out and painting the blocks off screen
    // (content-visibility), so a change on a 2,000-seat map costs what a change on a small one does.
    const grid = document.createElement("div");
    grid.className = "grid";
    grid.setAttribute("role", "group");
    grid.setAttribute("aria-label", "All seats");
    let block;
    seats.forEach(([seatId], index) => {
      if (index % 100 === 0) {
        block = document.createElement("div");
        block.className = "block";
        grid.append(block);
      }
      block.append(seatButton(seatId, index));
    });
    fragment.append(grid);
  } else {
    let currentSection;
    let currentRow;
    let rowSeats;
    seats.forEach(([seatId, meta], index) => {
      const section = meta.section ?? "";
      if (section !== currentSection) {
        currentSection = section;
        currentRow = undefined;
        if (section) {
          const heading = document.createElement("h2");
          heading.textContent = section;
          fragment.append(heading);
        }
      }
      const row = meta.row ?? "";
      if (row !== currentRow) {
        currentRow = row;
        const rowElement = document.createElement("div");
        rowElement.className = "row";
        rowElement.setAttribute("role", "group");
        rowElement.setAttribute("aria-label", `${section ? `${section}, ` : ""}row ${row}`);
        const rowLabel = document.createElement("span");
        rowLabel.className = "row-label";
        rowLabel.setAttribute("aria-hidden", "true");
        rowLabel.textContent = row;
        rowSeats = document.createElement("div");
        rowSeats.className = "seats";
        rowElement.append(rowLabel, rowSeats);
        fragment.append(rowElement);
      }
      rowSeats.append(seatButton(seatId, index));
    });
  }
  ui.map.replaceChildren(ui.map.querySelector("#map-help"), fragment);
  const first = state.order[0];
  if (first) setFocusSeat(state.selected.values().next().value ?? first, false);
}

function seatButton(seatId, index) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "seat";
  button.dataset.seatId = seatId;
  button.tabIndex = -1;
  const number = document.createElement("span");
  number.className = "num";
  number.textContent = label(seatId, index);
  const code = document.createElement("span");
  code.className = "code";
  button.append(number, code);
  state.elements.set(seatId, button);
  state.order.push(seatId);
  return button;
}

function viewOf(seatId, reading) {
  if (state.selected.has(seatId)) return "selected";
  if (reading.state === "held" && state.mySeats.has(seatId)) return "mine";
  return reading.state;
}

function render(seatId, now) {
  const button = state.elements.get(seatId);
  if (!button) return;
  const reading = state.map.seat(seatId, now);
  if (reading.state !== "available" && state.selected.delete(seatId)) {
    updateSelection();
    if (!state.requested.has(seatId)) state.lost.push(seatId);
  }
  const view = viewOf(seatId, reading);
  const previous = button.dataset.state;
  if (previous !== reading.state) {
    if (previous) state.counts[previous] -= 1;
    state.counts[reading.state] += 1;
    button.dataset.state = reading.state;
    stats.seatChangedAt[seatId] = Date.now();
  }
  if (reading.state === "held") state.heldSeats.add(seatId);
  else state.heldSeats.delete(seatId);
  if (button.dataset.view !== view) {
    button.dataset.view = view;
    button.className = `seat ${view}`;
    button.lastChild.textContent = CODES[view];
    button.setAttribute("aria-pressed", String(view === "selected"));
  }
  const name = seatName(seatId, state.map.layout.get(seatId));
  const text = `${name}: ${WORDS[view]}`;
  if (button.title !== text) {
    button.title = text;
    button.setAttribute("aria-label", text);
  }
}

// Seats are repainted at most every FLUSH_INTERVAL_MS: under a burst of events each frame then carries
// many changes instead of one, which costs the renderer far less than painting every frame (a change
// still shows within a tenth of a second).
const FLUSH_INTERVAL_MS = 100;
let lastFlush = 0;

function scheduleFlush() {
  if (state.flushScheduled) return;
  state.flushScheduled = true;
  const wait = lastFlush + FLUSH_INTERVAL_MS - performance.now();
  if (wait <= 0) requestAnimationFrame(flush);
  else setTimeout(() => requestAnimationFrame(flush), wait);
}

/** Renders the seats that changed since the last frame, then the summary. */
function flush() {
  state.flushScheduled = false;
  lastFlush = performance.now();
  const now = Date.now();
  for (const seatId of state.dirty) render(seatId, now);
  state.dirty.clear();
  tellLost();
  const done = performance.now();
  for (const received of state.pendingEvents) stats.latencyMs.push(done - received);
  state.pendingEvents = [];
  for (const key of Object.keys(state.counts)) ui.counts[key].textContent = String(state.counts[key]);
}

/** A selected seat taken by someone else is not dropped silently: the buyer is told which, in the words of a
 * refused hold (SEAT_UNAVAILABLE). */
function tellLost() {
  if (state.lost.length === 0) return;
  const seats = state.lost;
  state.lost = [];
  const one = seats.length === 1;
  show(
    `Seat unavailable: ${seats.map(nameOf).join("; ")} ${one ? "was" : "were"} taken by someone else. ` +
      `${one ? "It is" : "They are"} no longer selected.`,
  );
}

// A held seat reads as available from its holdExpiresAt (rule 3): look at held seats and holds' countdowns.
setInterval(() => {
  const now = Date.now();
  for (const seatId of state.heldSeats) {
    const seat = state.map.seats.get(seatId);
    if (seat?.holdExpiresAt !== null && seat?.holdExpiresAt <= now) state.dirty.add(seatId);
  }
  renderHolds(now);
  if (state.dirty.size > 0) scheduleFlush();
}, 250);

// Frames: how many the page dropped while events arrived (the benchmark reads them).
let lastFrame = null;
function watchFrames(time) {
  if (lastFrame !== null) {
    const delta = time - lastFrame;
    stats.frames += 1;
    if (delta > 25) stats.droppedFrames += Math.round(delta / 16.667) - 1;
    stats.longestFrameMs = Math.max(stats.longestFrameMs, delta);
  }
  lastFrame = time;
  requestAnimationFrame(watchFrames);

// Responsiveness: how late a 50 ms timer fires (a click or a key waits as long behind the same work).
let expectedTick = performance.now() + 50;
setInterval(() => {
  const now = performance.now();
  stats.loopLagMs.push(Math.max(0, now - expectedTick));
  if (stats.loopLagMs.length > 20000) stats.loopLagMs.shift();
  expectedTick = now + 50;
}, 50);
}
requestAnimationFrame(watchFrames);

// MARK: - Selection and keyboard

function nameOf(seatId) {
  return seatName(seatId, state.map.layout.get(seatId));
}

function updateSelection() {
  const count = state.selected.size;
  ui.selection.textContent =
    count === 0
      ? "No seats selected. Choose seats on the map (arrow keys move, Enter or Space selects)."
      : `Selected ${count}: ${[...state.selected].map(nameOf).join("; ")}`;
  ui.hold.disabled = count === 0;
  ui.hold.textContent = count === 0 ? "Hold selected seats" : `Hold ${count} seat${count === 1 ? "" : "s"}`;
  ui.clear.disabled = count === 0;
}

function toggle(seatId) {
  const reading = state.map.seat(seatId);
  if (state.selected.has(seatId)) {
    state.selected.delete(seatId);
  } else if (reading.state === "available") {
    state.selected.add(seatId);
  } else {
    show(`${nameOf(seatId)} is ${WORDS[viewOf(seatId, reading)]}: it cannot be selected.`);
    return;
  }
  render(seatId, Date.now());
  updateSelection();
}

function setFocusSeat(seatId, focus = true) {
  const previous = state.focusSeat && state.elements.get(state.focusSeat);
  if (previous) previous.tabIndex = -1;
  const button = state.elements.get(seatId);
  if (!button) return;
  state.focusSeat = seatId;
  button.tabIndex = 0;
  if (focus) button.focus();
}

/** The seat on the next line up or down whose centre is nearest (rows, or the wrapped grid). */
function vertical(button, direction) {
  const here = button.getBoundingClientRect();
  const centre = here.left + here.width / 2;
  let lineTop = null;
  let best = null;
  let bestDistance = Infinity;
  for (const candidate of state.elements.values()) {
    const box = candidate.getBoundingClientRect();
    const top = Math.round(box.top);
    if (direction > 0 ? top <= Math.round(here.top) : top >= Math.round(here.top)) continue;
    if (lineTop === null || (direction > 0 ? top < lineTop : top > lineTop)) {
      lineTop = top;
      best = null;
      bestDistance = Infinity;
    }
    if (top !== lineTop) continue;
    const distance = Math.abs(box.left + box.width / 2 - centre);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best?.dataset.seatId ?? null;
}

function lineEnd(button, last) {
  const top = Math.round(button.getBoundingClientRect().top);
  const line = state.order.filter((id) => Math.round(state.elements.get(id).getBoundingClientRect().top) === top);
  return last ? line[line.length - 1] : line[0];
}

ui.map.addEventListener("click", (event) => {
  const button = event.target.closest("button.seat");
  if (!button) return;
  setFocusSeat(button.dataset.seatId);
  toggle(button.dataset.seatId);
});

ui.map.addEventListener("keydown", (event) => {
  const button = event.target.closest("button.seat");
  if (!button) return;
  const index = state.order.indexOf(button.dataset.seatId);
  let next = null;
  switch (event.key) {
    case "ArrowRight":
      next = state.order[Math.min(state.order.length - 1, index + 1)];
      break;
    case "ArrowLeft":
      next = state.order[Math.max(0, index - 1)];
      break;
    case "ArrowDown":
      next = vertical(button, 1);
      break;
    case "ArrowUp":
      next = vertical(button, -1);
      break;
    case "Home":
      next = lineEnd(button, false);
      break;
    case "End":
      next = lineEnd(button, true);
      break;
    default:
      return;
  }
  event.preventDefault();
  if (next) setFocusSeat(next);
});

ui.clear.addEventListener("click", () => {
  const seats = [...state.selected];
  state.selected.clear();
  for (const seatId of seats) render(seatId, Date.now());
  updateSelection();
});

// MARK: - Holds

function show(text, ok = false) {
  ui.message.textContent = text;
  ui.message.className = ok ? "message ok" : "message";
  ui.message.dataset.kind = ok ? "ok" : "error";
  ui.message.hidden = false;
}

function remaining(ms) {
  const seconds = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

function renderHolds(now = Date.now()) {
  for (const hold of [...state.holds.values()]) {
    if (hold.expiresAt <= now) expireHold(hold);
  }
  const items = [];
  for (const hold of state.holds.values()) {
    let item = ui.holds.querySelector(`li[data-hold-id="${CSS.escape(hold.holdId)}"]`);
    if (!item) {
      item = document.createElement("li");
      item.dataset.holdId = hold.holdId;
      const what = document.createElement("span");
      what.className = "what";
      what.textContent = `Your hold${hold.showtimeId === state.showtimeId ? "" : ` (${hold.showtimeId})`}: ${hold.seatIds.map(nameOf).join("; ")}`;
      const countdown = document.createElement("span");
      countdown.className = "countdown";
      countdown.setAttribute("role", "timer");
      const release = document.createElement("button");
      release.type = "button";
      release.className = "release";
      release.textContent = "Release";
      release.addEventListener("click", () => releaseHold(hold.holdId));
      item.append(what, countdown, release);
    }
    item.querySelector(".countdown").textContent = `expires in ${remaining(hold.expiresAt - now)}`;
    items.push(item);
  }
  ui.holds.replaceChildren(...items);
}

function expireHold(hold) {
  state.holds.delete(hold.holdId);
  forgetSeats(hold);
  show(`Your hold of ${hold.seatIds.map(nameOf).join("; ")} expired: the seats are available again.`);
}

function forgetSeats(hold) {
  if (hold.showtimeId !== state.showtimeId) return;
  for (const seatId of hold.seatIds) {
    state.mySeats.delete(seatId);
    state.dirty.add(seatId);
  }
  scheduleFlush();
}

ui.hold.addEventListener("click", async () => {
  const seatIds = [...state.selected];
  if (seatIds.length === 0) return;
  if (!api.session) {
    show("Sign in first: choose a demo user and press Sign in.");
    return;
  }
  ui.hold.disabled = true;
  const showtimeId = state.showtimeId;
  state.requested = new Set(seatIds);
  try {
    const hold = await api.hold(showtimeId, seatIds, crypto.randomUUID());
    stats.lastHoldAt = Date.now();
    const entry = { holdId: hold.holdId, showtimeId, seatIds: hold.seatIds, expiresAt: Date.parse(hold.expiresAt) };
    state.holds.set(hold.holdId, entry);
    for (const seatId of hold.seatIds) {
      state.mySeats.add(seatId);
      state.selected.delete(seatId);
      state.dirty.add(seatId);
    }
    scheduleFlush();
    updateSelection();
    renderHolds();
    show(`Held ${hold.seatIds.map(nameOf).join("; ")} for you until ${new Date(entry.expiresAt).toLocaleTimeString()}.`, true);
  } catch (error) {
    stats.lastRefusalAt = Date.now();
    if (error.code === "SEAT_UNAVAILABLE") {
      for (const seatId of error.details?.seatIds ?? []) {
        state.selected.delete(seatId);
        state.dirty.add(seatId);
      }
      scheduleFlush();
    }
    show(describeError(error, nameOf));
  } finally {
    state.requested = new Set();
    updateSelection();
  }
});

async function releaseHold(holdId) {
  const hold = state.holds.get(holdId);
  if (!hold) return;
  try {
    await api.release(holdId);
    state.holds.delete(holdId);
    forgetSeats(hold);
    renderHolds();
    show(`Released ${hold.seatIds.map(nameOf).join("; ")}.`, true);
  } catch (error) {
    show(describeError(error, nameOf));
  }
}

// MARK: - Showtime and sign-in

function follow(showtimeId) {
  state.showtimeId = showtimeId;
  state.map = new SeatMap();
  state.selected.clear();
  state.mySeats = new Set(
    [...state.holds.values()].filter((hold) => hold.showtimeId === showtimeId).flatMap((hold) => hold.seatIds),
  );
  state.elements.clear();
  state.dirty.clear();
  ui.map.replaceChildren(ui.map.querySelector("#map-help"), paragraph(`Loading the seats of ${showtimeId}…`, "placeholder"));
  updateSelection();
  const url = new URL(location.href);
  url.searchParams.set("showtimeId", showtimeId);
  history.replaceState(null, "", url);
  live.follow(showtimeId);
}

ui.showtimeForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const value = ui.showtime.value.trim();
  if (!ui.showtime.checkValidity() || !value) {
    show("A showtime id is 1 to 128 characters of A-Z a-z 0-9 . _ : -");
    return;
  }
  if (value !== state.showtimeId) follow(value);
});

ui.signinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const userId = ui.user.value;
  try {
    await api.signIn(userId);
    state.holds.clear();
    state.mySeats.clear();
    renderHolds();
    for (const seatId of state.elements.keys()) state.dirty.add(seatId);
    scheduleFlush();
    ui.who.textContent = `Signed in as ${userId} (demo token, no scopes)`;
    show(`Signed in as ${userId}.`, true);
  } catch (error) {
    if (error.status === 404) {
      // No development tokens here: go on without a token, which the facade accepts only with
      // AUTH_MODE=none (its writes are refused 401 otherwise, and the page says so).
      api.useUserWithoutToken(userId);
      state.holds.clear();
      state.mySeats.clear();
      renderHolds();
      ui.who.textContent = `Acting as ${userId} without a token (AUTH_MODE=none only)`;
      show(
        "Demo sign-in is off on this server (DEV_TOKEN_ENDPOINT). Acting without a token, which works only " +
          "with AUTH_MODE=none; otherwise open the page with #token=<your token>.",
      );
    } else {
      show(describeError(error));
    }
  }
});

const token = fragment.get("token");
if (token) {
  const session = api.useToken(token);
  ui.who.textContent = `Signed in as ${session.userId}`;
  history.replaceState(null, "", location.pathname + location.search);
}

window.seatMapPage = {
  stats,
  drop: () => live.drop(),
  seat: (seatId) => state.map.seat(seatId),
  seats: () => Object.fromEntries([...state.map.layout.keys()].map((id) => [id, state.map.seat(id).state])),
  summary: () => ({ ...state.counts }),
};

const initial = params.get("showtimeId") ?? DEMO_SHOWTIME;
ui.showtime.value = initial;
follow(initial);
