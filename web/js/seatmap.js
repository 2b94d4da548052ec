// The page's model of one showtime's seats: Contracts.SeatMap (Swift) in JavaScript, as INTERFACE.md rule 8
// and decision 0012 say. Start from a snapshot (an `availability`), then apply each event to each seat it
// names only when the event's version of that seat is newer than the one held; a seat nothing named yet is
// available at version 0. Whatever order events of different holds arrive in, duplicates included, the map
// ends with what `availability` says. A held seat whose `holdExpiresAt` has passed reads as available, one
// version on (rule 3: the expiry is a change the sweep's `hold.expired` confirms later with that version).

/** The state an event type leaves its seats in. */
export const EVENT_STATES = Object.freeze({
  "hold.created": "held",
  "hold.extended": "held",
  "hold.released": "available",
  "hold.expired": "available",
  "seats.purchased": "purchased",
});

export class SeatMap {
  constructor() {
    /** seatId -> {state, version, holdExpiresAt (ms since the epoch, or null)} */
    this.seats = new Map();
    /** seatId -> {section, row, number, category, rank}, in the order the seat map defines them */
    this.layout = new Map();
    this.eventIds = new Set();
    this.eventIdOrder = [];
  }

  /**
   * Applies a snapshot (`{availability: [...]}`). Seats keep their order and metadata from it; each seat
   * takes the snapshot's state only when its version is newer than the one held (so a snapshot that
   * arrives after a reconnect never undoes a newer event already seen). Returns the seats whose reading
   * changed.
   */
  applySnapshot(snapshot) {
    const changed = [];
    const layout = new Map();
    for (const entry of snapshot.availability) {
      layout.set(entry.seatId, {
        section: entry.section ?? null,
        row: entry.row ?? null,
        number: entry.number ?? null,
        category: entry.category ?? null,
        rank: entry.rank ?? null,
      });
      const seat = {
        state: entry.state,
        version: entry.version,
        holdExpiresAt: entry.state === "held" && entry.holdExpiresAt ? Date.parse(entry.holdExpiresAt) : null,
      };
      if (this.#update(entry.seatId, seat)) changed.push(entry.seatId);
    }
    for (const seatId of this.seats.keys()) {
      if (!layout.has(seatId)) this.seats.delete(seatId);
    }
    this.layout = layout;
    return changed;
  }

  /**
   * Applies one event (`{type, eventId, seatIds, seatVersions, expiresAt?}`) to each seat it names whose
   * version in `seatVersions` is newer than the map's. Returns the seats it changed (none for a duplicate
   * or a stale event).
   */
  applyEvent(event) {
    const state = EVENT_STATES[event.type];
    if (!state) return [];
    if (event.eventId) {
      if (this.eventIds.has(event.eventId)) return [];
      this.eventIds.add(event.eventId);
      this.eventIdOrder.push(event.eventId);
      if (this.eventIdOrder.length > 10000) this.eventIds.delete(this.eventIdOrder.shift());
    }
    const changed = [];
    const expires = state === "held" && event.expiresAt ? Date.parse(event.expiresAt) : null;
    for (const seatId of event.seatIds ?? []) {
      const version = event.seatVersions?.[seatId];
      if (typeof version !== "number") continue;
      if (this.#update(seatId, { state, version, holdExpiresAt: expires })) changed.push(seatId);
    }
    return changed;
  }

  /** The seat as it reads at `now` (ms): a hold past its expiry has let it go. */
  seat(seatId, now = Date.now()) {
    const seat = this.seats.get(seatId) ?? { state: "available", version: 0, holdExpiresAt: null };
    if (seat.state === "held" && seat.holdExpiresAt !== null && seat.holdExpiresAt <= now) {
      return { state: "available", version: seat.version + 1, holdExpiresAt: null };
    }
    return seat;
  }

  /** Counts of the seats of the layout by their reading at `now`. */
  summary(now = Date.now()) {
    const summary = { available: 0, held: 0, purchased: 0 };
    for (const seatId of this.layout.keys()) summary[this.seat(seatId, now).state] += 1;
    return summary;
  }

  #update(seatId, seat) {
    const current = this.seats.get(seatId);
    if (current && current.version >= seat.version) return false;
    this.seats.set(seatId, seat);
    return true;
  }
}

/** How a seat is named to a person: "Stalls, row A, seat 1" when the map has rows, else its id. */
export function seatName(seatId, meta) {
  if (!meta || (meta.row === null && meta.number === null)) return seatId;
  const parts = [];
  if (meta.section) parts.push(meta.section);
  if (meta.row !== null) parts.push(`row ${meta.row}`);
  if (meta.number !== null) parts.push(`seat ${meta.number}`);
  return parts.join(", ");
}
